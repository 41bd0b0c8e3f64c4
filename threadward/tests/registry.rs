//! Registry snapshots report what threads really do.

mod common;

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use common::{bounded, eventually, gate, HOUR, SEC};
use threadward::registry::{self, ThreadInfo, ThreadKind, ThreadState, WaitKind};
use threadward::{Pool, ThreadId};

fn info(id: ThreadId) -> Option<ThreadInfo> {
    registry::snapshot()
        .threads
        .into_iter()
        .find(|t| t.id == id)
}

fn wait_state(id: ThreadId, want: ThreadState) {
    eventually(10 * SEC, &format!("{id} in state {want}"), || {
        info(id).is_some_and(|t| t.state == want)
    });
}

#[test]
fn each_wait_shows_up_as_its_own_state() {
    bounded(30 * SEC, || {
        let t = threadward::spawn("snap-sleep", |cx| cx.sleep(HOUR)).unwrap();
        wait_state(t.id(), ThreadState::Waiting(WaitKind::Sleep));
        let i = info(t.id()).unwrap();
        assert_eq!(i.kind, ThreadKind::Thread);
        assert_eq!(&*i.name, "snap-sleep");
        t.stop().unwrap().unwrap_err();

        let t = threadward::spawn("snap-cv", |cx| {
            let m = Mutex::new(());
            let cv = Condvar::new();
            cx.wait_while(&cv, m.lock().unwrap(), |_| true).map(|_| ())
        })
        .unwrap();
        wait_state(t.id(), ThreadState::Waiting(WaitKind::Condvar));
        t.stop().unwrap().unwrap_err();

        let (_tx, rx) = crossbeam_channel::unbounded::<()>();
        let t = threadward::spawn("snap-chan", move |cx| cx.recv(&rx).map_err(|_| ())).unwrap();
        wait_state(t.id(), ThreadState::Waiting(WaitKind::Channel));
        t.stop().unwrap().unwrap_err();

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = threadward::spawn("snap-fd", move |cx| cx.wait_readable(&a).is_err()).unwrap();
        wait_state(t.id(), ThreadState::Waiting(WaitKind::Fd));
        assert!(t.stop().unwrap());
    });
}

#[test]
fn paused_and_stopping_threads_are_reported() {
    bounded(30 * SEC, || {
        // It ignores its stop until the test saw it stopping (a std
        // channel, which does not see the stop; a 300 ms sleep here could
        // end before a loaded machine ran the check).
        let (go, wait) = gate();
        let t = threadward::spawn("snap-pause", move |cx| {
            while cx.pause_point().is_ok() {
                std::thread::yield_now();
            }
            wait.wait();
        })
        .unwrap();
        let st = t.stopper();
        assert!(st.pause());
        wait_state(t.id(), ThreadState::Paused);
        st.request_stop();
        wait_state(t.id(), ThreadState::Stopping);
        go.open();
        t.join().unwrap();
    });
}

#[test]
fn parked_pool_workers_show_idle_and_busy_ones_their_job() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("snappool")
            .min_idle(2)
            .build()
            .unwrap();
        eventually(10 * SEC, "two idle workers", || {
            registry::snapshot()
                .threads
                .iter()
                .filter(|t| {
                    matches!(&t.kind, ThreadKind::PoolWorker { pool } if &**pool == "snappool")
                        && t.state == ThreadState::Idle
                })
                .count()
                == 2
        });
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = pool
            .spawn(move |cx| {
                tx.send(cx.id()).unwrap();
                cx.sleep(HOUR)
            })
            .unwrap();
        let worker = rx.recv_timeout(5 * SEC).unwrap();
        wait_state(worker, ThreadState::Waiting(WaitKind::Sleep));
        let i = info(worker).unwrap();
        assert_eq!(i.job, Some(job.id()));
        let snap = registry::snapshot();
        let p = snap.pools.iter().find(|p| &*p.name == "snappool").unwrap();
        assert_eq!(p.stats.busy, 1);
        let table = snap.to_string();
        assert!(table.contains("snappool-"), "{table}");
        assert!(table.contains("waiting:sleep"), "{table}");
        assert!(table.contains("pool snappool:"), "{table}");
        job.cancel();
        drop(pool);
        assert!(!registry::snapshot()
            .pools
            .iter()
            .any(|p| &*p.name == "snappool"));
    });
}

#[test]
fn a_snapshot_of_thousands_of_threads_is_cheap() {
    bounded(60 * SEC, || {
        let pool = Pool::builder()
            .name("snapmany")
            .max_threads(3000)
            .stack_size(64 * 1024)
            .build()
            .unwrap();
        let jobs: Vec<_> = (0..2000)
            .map(|_| pool.spawn(|cx| cx.sleep(HOUR)).unwrap())
            .collect();
        eventually(30 * SEC, "2000 busy", || pool.stats().busy == 2000);
        let start = Instant::now();
        let snap = registry::snapshot();
        let took = start.elapsed();
        assert!(snap.threads.len() >= 2000);
        // Not a performance assertion (bench/ measures it): a sanity bound
        // that only a pathological implementation would miss.
        assert!(took < 5 * SEC, "snapshot took {took:?}");
        println!("snapshot of {} threads: {took:?}", snap.threads.len());
        drop(jobs);
        assert!(pool.shutdown(30 * SEC).stragglers.is_empty());
    });
}

/// What went wrong where no call could return an error still reaches a
/// program without a tracing subscriber: through the snapshot.
#[test]
fn incidents_without_a_caller_are_in_the_snapshot() {
    use threadward::registry::IncidentKind;
    let before = threadward::registry::snapshot().incidents_total;
    // A stop callback that panics: contained.
    let s = threadward::StopSource::new();
    let _g = s.token().on_stop(|| panic!("callback boom"));
    s.request_stop();
    // A pool dropped while a job ignores its stop past the drop deadline.
    let pool = threadward::Pool::builder()
        .drop_deadline(std::time::Duration::from_millis(20))
        .build()
        .unwrap();
    let (started, rx) = std::sync::mpsc::channel();
    let (go, wait) = gate();
    let _job = pool
        .spawn(move |_| {
            started.send(()).unwrap();
            // Ignores its stop until the pool's drop gave up on it.
            wait.wait();
        })
        .unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    drop(pool);
    go.open();
    let snap = threadward::registry::snapshot();
    assert!(snap.incidents_total >= before + 2, "{snap:?}");
    let kinds: Vec<_> = snap.incidents.iter().map(|i| i.kind).collect();
    assert!(kinds.contains(&IncidentKind::ContainedPanic), "{kinds:?}");
    assert!(
        kinds.contains(&IncidentKind::DroppedPoolStragglers),
        "{kinds:?}"
    );
    assert!(snap
        .incidents
        .iter()
        .any(|i| i.message.contains("callback boom")));
}

/// The pools' service threads show their real wait (idle while no pool
/// needs them, not "running"); the pool line says running and
/// compensated; the summary is one line per pool plus the thread states.
#[test]
fn service_threads_show_idle_and_the_summary_is_short() {
    use threadward::registry::snapshot;
    let pool = threadward::Pool::builder()
        .name("svc-idle")
        .build()
        .unwrap();
    pool.spawn(|_| ()).unwrap().join().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let snap = snapshot();
        let service: Vec<_> = snap
            .threads
            .iter()
            .filter(|t| t.kind == ThreadKind::PoolService)
            .collect();
        assert!(!service.is_empty(), "the manager is listed");
        if service.iter().all(|t| t.state == ThreadState::Idle) {
            let text = snap.to_string();
            assert!(
                text.contains("running") && text.contains("compensated"),
                "{text}"
            );
            let summary = snap.summary().to_string();
            assert!(summary.starts_with("threads: "), "{summary}");
            assert!(summary.contains("pool svc-idle: "), "{summary}");
            assert!(summary.lines().count() <= 2 + snap.pools.len(), "{summary}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "service threads never idle: {snap}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
