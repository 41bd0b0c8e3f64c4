//! Hostile conditions and self-referential misuse: each returns promptly
//! with an error or a report that says so, never a deadlock.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, spawn_started, with_own_job, SEC};
use threadward::{JobError, Pool, SpawnError};

#[test]
fn a_job_waiting_for_its_own_pool_to_go_idle_waits_only_for_the_others() {
    bounded(20 * SEC, || {
        let pool = Arc::new(
            Pool::builder()
                .name("selfwait")
                .max_threads(4)
                .build()
                .unwrap(),
        );
        let other = pool
            .spawn(|cx| cx.sleep(Duration::from_millis(50)).is_ok())
            .unwrap();
        let p = pool.clone();
        let job = pool
            .spawn(move |_| {
                let start = Instant::now();
                p.wait_idle();
                (start.elapsed(), p.stats().busy)
            })
            .unwrap();
        let (waited, busy) = job.join().unwrap();
        assert!(other.join().unwrap());
        assert_eq!(busy, 1, "only the caller itself was still busy");
        assert!(waited < 10 * SEC);
    });
}

#[test]
fn wait_idle_from_the_only_thread_with_work_queued_behind_it_returns() {
    bounded(20 * SEC, || {
        let pool = Arc::new(
            Pool::builder()
                .name("selfwait1")
                .max_threads(1)
                .build()
                .unwrap(),
        );
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let p = pool.clone();
        let job = pool
            .spawn(move |cx| {
                cx.recv(&go_rx).unwrap();
                // A job is queued behind us and no other thread may exist.
                p.wait_idle_timeout(Duration::from_secs(30))
            })
            .unwrap();
        let queued = pool.spawn(|_| 7).unwrap();
        go_tx.send(()).unwrap();
        // It returns (true: nothing else can make progress) instead of hanging.
        assert_eq!(job.join_timeout(5 * SEC).unwrap(), Ok(true));
        assert_eq!(queued.join(), Ok(7));
    });
}

#[test]
fn a_job_closing_its_own_pool_gets_a_report_naming_itself() {
    bounded(20 * SEC, || {
        let pool = Arc::new(Pool::builder().name("selfclose").build().unwrap());
        let p = pool.clone();
        let job = pool
            .spawn(move |cx| (p.close(Duration::from_secs(30)), cx.id()))
            .unwrap();
        let (report, me) = job.join_timeout(10 * SEC).unwrap().unwrap();
        assert!(report.elapsed < 5 * SEC, "{report}");
        assert_eq!(report.stragglers.len(), 1, "{report}");
        assert_eq!(report.stragglers[0].id, me);
        assert!(matches!(pool.spawn(|_| ()), Err(SpawnError::ShutDown)));
    });
}

#[test]
fn stragglers_that_ignore_stop_never_stretch_the_deadline() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("ignorers").build().unwrap();
        let release = Arc::new(AtomicBool::new(false));
        // Spins on the CPU without ever checking its stop.
        let r = release.clone();
        let _spinner = spawn_started(&pool, move |_| {
            let mut n = 0u64;
            while !r.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                std::hint::spin_loop();
            }
            n
        });
        // Blocks in a wait the pool cannot see (a std channel nobody sends on).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let _foreign = spawn_started(&pool, move |_| {
            let _ = rx.recv();
            0
        });
        let deadline = Duration::from_millis(200);
        let start = Instant::now();
        let report = pool.shutdown(deadline);
        let took = start.elapsed();
        println!("shutdown({deadline:?}) with 2 stop-ignoring jobs returned after {took:?}");
        assert!(took >= deadline);
        // A hang bound, not a performance claim (bench/ measures timings).
        assert!(took < deadline + SEC, "took {took:?}");
        let mut names: Vec<_> = report
            .stragglers
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{report}");
        assert!(
            names.iter().all(|n| n.starts_with("ignorers-")),
            "{names:?}"
        );
        release.store(true, Ordering::Relaxed);
        drop(tx);
    });
}

#[test]
fn a_job_stopping_itself_after_a_cancel_gets_self_join() {
    bounded(10 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        let (stopped, r) = with_own_job(&pool, |cx, me| {
            me.cancel(); // running: requests our own stop
            (cx.should_stop(), me.stop())
        });
        assert!(stopped, "cancel of a running job requests its stop");
        assert_eq!(r, Err(JobError::SelfJoin));
    });
}
