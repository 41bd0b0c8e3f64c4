//! Stages: ordered start, reverse undo of exactly what started.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bounded, running_sleeper, spawn_stubborn, HOUR, SEC};
use threadward::{Pool, StageError, Stages, UndoOutcome};

type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Err,
    Panic,
}

/// Starts stages 0..n, failing stage `k` with `fault`; returns the error.
fn run(n: usize, k: usize, fault: Fault, log: &Log) -> StageError {
    let mut stages = Stages::new("fi");
    for i in 0..n {
        let l = log.clone();
        let r = stages.start(&format!("s{i}"), move || {
            if i == k {
                match fault {
                    Fault::Err => return Err(std::io::Error::other(format!("injected at {i}"))),
                    Fault::Panic => panic!("injected panic at {i}"),
                }
            }
            l.lock().unwrap().push(format!("init {i}"));
            let l2 = l.clone();
            Ok((i, move || l2.lock().unwrap().push(format!("undo {i}"))))
        });
        match r {
            Ok(v) => assert_eq!(v, i),
            Err(e) => {
                assert!(stages.is_empty(), "failed start leaves nothing started");
                return e;
            }
        }
    }
    panic!("stage {k} did not fail");
}

#[test]
fn failing_stage_k_undoes_exactly_stages_before_it_in_reverse_once_each() {
    const N: usize = 6;
    for fault in [Fault::Err, Fault::Panic] {
        for k in 0..N {
            let log: Log = Arc::default();
            let e = run(N, k, fault, &log);
            assert_eq!(e.stage, format!("s{k}"));
            assert_eq!(e.group, "fi");
            let cause = e.cause.to_string();
            match fault {
                Fault::Err => assert_eq!(cause, format!("injected at {k}")),
                Fault::Panic => {
                    assert!(cause.contains(&format!("injected panic at {k}")), "{cause}")
                }
            }
            assert!(e.to_string().contains(&format!("s{k}")));
            let mut expected: Vec<String> = (0..k).map(|i| format!("init {i}")).collect();
            expected.extend((0..k).rev().map(|i| format!("undo {i}")));
            assert_eq!(*log.lock().unwrap(), expected, "k = {k}");
            let undone: Vec<_> = e.undo.undone.iter().map(|u| u.name.clone()).collect();
            let want: Vec<_> = (0..k).rev().map(|i| format!("s{i}")).collect();
            assert_eq!(undone, want);
            assert!(e.undo.is_clean());
        }
    }
}

#[test]
fn a_panicking_undo_is_contained_and_the_rest_still_run() {
    let log: Log = Arc::default();
    let mut stages = Stages::new("undo-panic");
    for i in 0..4 {
        let l = log.clone();
        stages
            .start(&format!("s{i}"), move || {
                Ok::<_, std::io::Error>(((), move || {
                    if i == 2 {
                        panic!("undo {i} exploded");
                    }
                    l.lock().unwrap().push(i.to_string());
                }))
            })
            .unwrap();
    }
    let report = stages.shutdown(Duration::from_secs(1));
    assert_eq!(*log.lock().unwrap(), vec!["3", "1", "0"]);
    assert!(!report.is_clean());
    assert!(
        matches!(&report.undone[1].outcome, UndoOutcome::Panicked(m) if m.contains("exploded"))
    );
    assert!(
        stages.shutdown(Duration::from_secs(1)).undone.is_empty(),
        "idempotent"
    );
}

#[test]
fn optional_stages_degrade_with_a_record_and_the_rest_continues() {
    let mut stages = Stages::new("xpc");
    assert_eq!(
        stages.start_optional("reboot-notifier", || {
            Err::<((), fn()), _>(std::io::Error::other("no notifier chain"))
        }),
        None
    );
    assert_eq!(
        stages.start_optional("die-notifier", || -> Result<((), fn()), std::io::Error> {
            panic!("die chain broken")
        }),
        None
    );
    let v = stages
        .start("discovery", || Ok::<_, std::io::Error>((5, || {})))
        .unwrap();
    assert_eq!(v, 5);
    let d = stages.degraded();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].stage, "reboot-notifier");
    assert!(d[0].cause.contains("no notifier chain"));
    assert!(d[1].cause.contains("die chain broken"));
    assert_eq!(stages.started(), vec!["discovery"]);
}

#[test]
fn drop_undoes_everything_in_reverse() {
    let log: Log = Arc::default();
    {
        let mut stages = Stages::new("dropped");
        for i in 0..3 {
            let l = log.clone();
            stages
                .start(&format!("s{i}"), move || {
                    Ok::<_, std::io::Error>(((), move || {
                        l.lock().unwrap().push(format!("undo {i}"))
                    }))
                })
                .unwrap();
        }
    }
    assert_eq!(*log.lock().unwrap(), vec!["undo 2", "undo 1", "undo 0"]);
}

#[test]
fn thread_and_pool_stages_stop_with_their_deadline() {
    bounded(20 * SEC, || {
        let mut stages = Stages::new("svc");
        let stopper = stages
            .thread("sleeper", Duration::from_secs(5), || {
                threadward::spawn("sleeper", |cx| cx.sleep(HOUR))
            })
            .unwrap();
        let pool = stages
            .pool(
                "deliver",
                Duration::from_secs(5),
                Pool::builder().name("deliver"),
            )
            .unwrap();
        let job = running_sleeper(&pool);
        let report = stages.shutdown(Duration::from_secs(10));
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.undone[0].name, "deliver");
        assert_eq!(report.undone[1].name, "sleeper");
        assert!(stopper.is_finished());
        assert_eq!(job.join(), Ok(Err(threadward::Stopped)));
    });
}

#[test]
fn undo_of_a_pool_whose_job_ignores_stop_reports_the_straggler_within_the_deadline() {
    bounded(20 * SEC, || {
        let mut stages = Stages::new("svc");
        let pool = stages
            .pool(
                "stubborn-pool",
                Duration::from_millis(200),
                Pool::builder().name("stubborn"),
            )
            .unwrap();
        let release = spawn_stubborn(&pool);
        let start = Instant::now();
        let report = stages.shutdown(Duration::from_secs(10));
        let took = start.elapsed();
        assert!(took < Duration::from_millis(700), "took {took:?}");
        match &report.undone[0].outcome {
            UndoOutcome::PoolStragglers(s) => {
                assert_eq!(s.len(), 1);
                assert!(s[0].name.starts_with("stubborn-"));
            }
            other => panic!("expected a straggler, got {other}"),
        }
        release.store(true, Ordering::SeqCst);
    });
}

#[test]
fn a_failing_thread_stage_names_itself_and_undoes_the_pool_before_it() {
    bounded(20 * SEC, || {
        let mut stages = Stages::new("svc");
        let pool = stages
            .pool("p", Duration::from_secs(5), Pool::builder().name("p"))
            .unwrap();
        let e = stages
            .thread("bad", Duration::from_secs(1), || {
                threadward::spawn("", |_| ())
            })
            .unwrap_err();
        assert_eq!(e.stage, "bad");
        assert_eq!(e.undo.undone.len(), 1);
        assert!(pool.spawn(|_| ()).is_err(), "the pool stage was shut down");
    });
}
