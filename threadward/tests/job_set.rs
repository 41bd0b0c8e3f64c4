//! `JobSet` and `Pool::map`: jobs joined in the order they end, whatever
//! the ending; cancel on drop; progress; a bounded batch in input order.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, SEC};
use threadward::{Concurrency, JobError, JobHint, JobSet, JoinNextError, MapError, Pool};

fn pool(name: &str) -> Pool {
    Pool::builder()
        .name(name)
        .concurrency(Concurrency::Unlimited)
        .build()
        .unwrap()
}

#[test]
fn join_next_returns_jobs_in_the_order_they_end() {
    // The test, not the clock, decides the order: each job waits on its own
    // gate, and the gates open in the order 1, 2, 0, each only after the
    // previous job came out of `join_next`. (A version that slept 60, 5 and
    // 30 ms failed once on a loaded CI machine: sleeps order nothing when a
    // job waits 55 ms for a CPU.)
    bounded(30 * SEC, || {
        let pool = pool("set-order");
        let mut set = JobSet::new();
        let mut gates = Vec::new();
        let mut ids = Vec::new();
        for i in 0..3usize {
            let (open, gate) = crossbeam_channel::bounded::<()>(1);
            gates.push(open);
            let id = set
                .spawn_hinted(&pool, JobHint::MayBlock, move |_| {
                    gate.recv_timeout(Duration::from_secs(20))
                        .expect("the test opens every gate");
                    i
                })
                .unwrap();
            ids.push((id, i));
        }
        for i in [1usize, 2, 0] {
            gates[i].send(()).unwrap();
            let (id, r) = set.join_next().expect("a job is left");
            assert_eq!(r.unwrap(), i, "the job whose gate opened ends next");
            assert!(ids.contains(&(id, i)), "the id names its job");
        }
        assert_eq!(set.join_next(), None);
    });
}

#[test]
fn every_ending_reaches_the_set_panics_cancels_and_shutdowns() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("set-ends")
            .max_threads(1)
            .build()
            .unwrap();
        let mut set: JobSet<u32> = JobSet::new();
        let (tx, rx) = crossbeam_channel::bounded(1);
        set.spawn(&pool, move |cx| {
            tx.send(()).unwrap();
            let _ = cx.sleep(Duration::from_secs(60));
            1
        })
        .unwrap();
        rx.recv_timeout(10 * SEC).unwrap();
        let panics = set.spawn(&pool, |_| panic!("boom")).unwrap();
        for i in 0..5 {
            set.spawn(&pool, move |_| i).unwrap();
        }
        assert_eq!((set.len(), set.running()), (7, 1));
        // Queued ones are cancelled, the running one stopped (it returns 1).
        set.cancel_all();
        let mut cancelled = 0;
        let mut stopped = 0;
        for (id, r) in set.join_all() {
            match r {
                Ok(1) => stopped += 1,
                Err(JobError::Cancelled) => cancelled += 1,
                other => panic!("{id}: {other:?}"),
            }
            // The panicking job was cancelled before it ran: no panic.
            let _ = panics;
        }
        assert_eq!((stopped, cancelled), (1, 6));
        // A panic, and a shutdown of queued jobs.
        let mut set: JobSet<u32> = JobSet::new();
        let blocker = set
            .spawn(&pool, |cx| {
                cx.sleep(Duration::from_secs(60)).map_or(0, |_| 0)
            })
            .unwrap();
        let queued = set.spawn(&pool, |_| 5).unwrap();
        let _ = blocker;
        let _ = pool.shutdown(SEC);
        let mut seen = std::collections::HashMap::new();
        while let Some((id, r)) = set.join_next() {
            seen.insert(id, r);
        }
        assert_eq!(seen[&queued], Err(JobError::ShutDown));
        let pool = Pool::builder().name("set-panic").build().unwrap();
        let mut set: JobSet<u32> = JobSet::new();
        let id = set.spawn(&pool, |_| panic!("boom")).unwrap();
        let (got, r) = set.join_next().unwrap();
        assert_eq!(got, id);
        assert!(matches!(r, Err(JobError::Panicked { .. })));
    });
}

#[test]
fn dropping_the_set_cancels_and_stops_its_jobs() {
    bounded(30 * SEC, || {
        let pool = pool("set-drop");
        let ran = Arc::new(AtomicUsize::new(0));
        {
            let mut set = JobSet::new();
            for _ in 0..20 {
                let ran = ran.clone();
                set.spawn(&pool, move |cx| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    cx.sleep(Duration::from_secs(60))
                })
                .unwrap();
            }
            let deadline = Instant::now() + 10 * SEC;
            while set.running() < 20 {
                assert!(Instant::now() < deadline, "jobs did not start");
                std::thread::sleep(Duration::from_millis(1));
            }
        } // dropped: every job stopped
        let start = Instant::now();
        assert!(pool.wait_idle_timeout(10 * SEC));
        assert!(start.elapsed() < 5 * SEC);
        assert_eq!(ran.load(Ordering::SeqCst), 20);
    });
}

#[test]
fn timeouts_stops_and_refusals_say_why() {
    bounded(30 * SEC, || {
        let pool = pool("set-why");
        let mut set = JobSet::new();
        assert_eq!(
            set.join_next_timeout(Duration::ZERO).unwrap_err(),
            JoinNextError::Empty
        );
        set.spawn(&pool, |cx| cx.sleep(Duration::from_secs(60)).is_ok())
            .unwrap();
        assert_eq!(
            set.join_next_timeout(Duration::from_millis(10))
                .unwrap_err(),
            JoinNextError::Timeout
        );
        let waiter = threadward::spawn("collector", move |cx| {
            let r = set.join_next_or_stop(cx).map(|_| ());
            (r, set)
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (r, mut set) = waiter.stop().unwrap();
        assert_eq!(r, Err(JoinNextError::Stopped));
        assert_eq!(set.len(), 1, "a stopped wait keeps the jobs");
        set.cancel_all();
        assert_eq!(set.join_next().map(|(_, r)| r), Some(Ok(false)));
        // A refused job is not in the set, and leaves nothing behind.
        let _ = pool.shutdown(SEC);
        assert!(set.spawn(&pool, |_| true).is_err());
        assert!(set.is_empty());
        assert_eq!(set.finished(), 0);
        assert_eq!(set.join_next(), None);
    });
}

#[test]
fn a_set_of_100_000_jobs_is_linear() {
    bounded(60 * SEC, || {
        let pool = Pool::builder().name("set-big").build().unwrap();
        let mut set = JobSet::new();
        for i in 0..100_000u64 {
            set.spawn(&pool, move |_| i).unwrap();
        }
        let sum: u64 = set.join_all().into_iter().map(|(_, r)| r.unwrap()).sum();
        assert_eq!(sum, 100_000 * 99_999 / 2);
        // And dropping a full one cancels in one pass.
        let blocker = pool
            .spawn_hinted(JobHint::Cpu, |cx| cx.sleep(Duration::from_secs(60)))
            .unwrap();
        let mut set = JobSet::new();
        for i in 0..100_000u64 {
            set.spawn(&pool, move |_| i).unwrap();
        }
        drop(set);
        blocker.cancel();
        assert!(pool.wait_idle_timeout(30 * SEC));
    });
}

#[test]
fn map_keeps_input_order_bounds_the_window_and_indexes_errors() {
    bounded(30 * SEC, || {
        let pool = pool("map");
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (f, m) = (in_flight.clone(), most.clone());
        let out = pool.map(0..200u64, 4, move |i, cx| {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let _ = cx.sleep(Duration::from_micros(200));
            f.fetch_sub(1, Ordering::SeqCst);
            assert!(i != 17, "item 17 fails");
            i * 2
        });
        assert_eq!(out.len(), 200);
        for (i, r) in out.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i as u64 * 2),
                Err(MapError::Job { index, error }) => {
                    assert_eq!(*index, 17);
                    assert!(matches!(error, JobError::Panicked { .. }));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(out[17].is_err());
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 4, "{most} jobs in flight, window 4");
        // Window 0 is 1, and an empty input is an empty output.
        assert_eq!(pool.map(Vec::<u8>::new(), 0, |x, _| x).len(), 0);
        assert_eq!(
            pool.map([1u8, 2], 0, |x, _| x + 1)
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        // Refused items say so with their index.
        let _ = pool.shutdown(SEC);
        let out = pool.map([1u8, 2], 2, |x, _| x);
        assert!(matches!(out[1], Err(MapError::Refused { index: 1, .. })));
    });
}
