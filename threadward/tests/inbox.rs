//! The promises of "Submit without the pool lock" (the pool README): a
//! saturated pool takes counted jobs through its inbox, and still never
//! loses one — not to a shutdown, a close or a cancel racing the submits —
//! and its counts see every job a finished submit pushed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, identity_holds, SEC};
use threadward::{Concurrency, JobError, JobHint, Pool};

/// A `Limit(1)` pool kept saturated by a job that spins until `release`,
/// with one job queued behind it: from here on counted submits go
/// through the inbox. The spinner is hinted `Cpu`, so the monitor never
/// takes it for a hog and opens no place, and the pool has one thread, so
/// no other worker can start a queued job whatever the machine's load
/// (the liveness backstop's extra place finds no thread to use).
fn saturated(name: &str, release: &Arc<AtomicBool>) -> Pool {
    let pool = Pool::builder()
        .name(name)
        .concurrency(Concurrency::Limit(1))
        .max_threads(1)
        .build()
        .unwrap();
    let r = release.clone();
    drop(
        pool.spawn_hinted(JobHint::Cpu, move |_| {
            while !r.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
        .unwrap(),
    );
    pool.execute(|_| ()).unwrap();
    pool
}

/// Every job a submit accepted is counted by the next `stats()` (a lock
/// moves the inbox in first), and all of them run.
#[test]
fn jobs_in_the_inbox_are_counted_and_run() {
    bounded(60 * SEC, || {
        let release = Arc::new(AtomicBool::new(false));
        let pool = saturated("inbox-count", &release);
        let ran = Arc::new(AtomicUsize::new(0));
        for i in 0..10_000u64 {
            let ran = ran.clone();
            pool.execute(move |_| {
                ran.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            if i % 1000 == 0 {
                let s = pool.stats();
                assert_eq!(s.submitted, i + 3, "{s:?}");
                assert!(identity_holds(&s), "{s:?}");
            }
        }
        release.store(true, Ordering::Relaxed);
        assert!(pool.wait_idle_timeout(30 * SEC));
        assert_eq!(ran.load(Ordering::Relaxed), 10_000);
        let s = pool.stats();
        assert_eq!(s.completed, 10_002, "{s:?}");
    });
}

/// Submits racing a shutdown: every handle resolves (ran, or `ShutDown`),
/// none hangs, and the counts add up (accepted = completed + cancelled).
#[test]
fn submits_racing_shutdown_all_resolve() {
    bounded(60 * SEC, || {
        for round in 0..50 {
            let release = Arc::new(AtomicBool::new(false));
            let pool = Arc::new(saturated("inbox-shut", &release));
            let submitters: Vec<_> = (0..2)
                .map(|_| {
                    let pool = pool.clone();
                    std::thread::spawn(move || {
                        let mut jobs = Vec::new();
                        for _ in 0..2000 {
                            match pool.spawn(|_| 7u32) {
                                Ok(j) => jobs.push(j),
                                Err(_) => break, // refused: shut down
                            }
                        }
                        jobs
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_micros(200 * (round % 5)));
            release.store(true, Ordering::Relaxed);
            let report = pool.shutdown(5 * SEC);
            assert!(report.stragglers.is_empty(), "{report:?}");
            let mut ran = 0u64;
            let mut shut = 0u64;
            for s in submitters {
                for job in s.join().unwrap() {
                    match job.join_timeout(10 * SEC) {
                        Ok(Ok(7)) => ran += 1,
                        Ok(Err(JobError::ShutDown)) => shut += 1,
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(_) => panic!("an accepted job never resolved"),
                    }
                }
            }
            let s = pool.stats();
            assert!(identity_holds(&s), "{s:?}");
            assert_eq!(s.queued, 0, "{s:?}");
            // The two set-up jobs (either may be shut down before it
            // starts), then the accepted ones.
            assert_eq!(s.submitted, ran + shut + 2, "{s:?}");
            assert_eq!(s.completed + s.cancelled, s.submitted, "{s:?}");
            assert!((ran..=ran + 2).contains(&s.completed), "{s:?}");
        }
    });
}

/// Jobs cancelled while they may still wait in the inbox: each cancelled
/// one ends `Cancelled` and never runs, every other one runs, and the
/// counts add up.
#[test]
fn cancels_of_jobs_in_the_inbox_hold() {
    bounded(60 * SEC, || {
        let release = Arc::new(AtomicBool::new(false));
        let pool = saturated("inbox-cancel", &release);
        let ran = Arc::new(AtomicUsize::new(0));
        let mut kept = Vec::new();
        let mut cancelled = 0;
        for i in 0..5000 {
            let r = ran.clone();
            let job = pool
                .spawn(move |_| {
                    r.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
            if i % 2 == 0 {
                assert!(job.cancel(), "a queued job is kept from running");
                assert_eq!(job.join(), Err(JobError::Cancelled));
                cancelled += 1;
            } else {
                kept.push(job);
            }
            if i == 2500 {
                let s = pool.stats();
                assert!(identity_holds(&s), "{s:?}");
            }
        }
        release.store(true, Ordering::Relaxed);
        for job in kept {
            assert_eq!(job.join_timeout(10 * SEC).ok(), Some(Ok(())));
        }
        assert!(pool.wait_idle_timeout(10 * SEC));
        assert_eq!(ran.load(Ordering::Relaxed), 2500);
        let s = pool.stats();
        assert_eq!(s.cancelled, cancelled, "{s:?}");
        assert_eq!(s.completed, 2502, "{s:?}");
        assert!(identity_holds(&s), "{s:?}");
    });
}

/// A close racing submits: accepted jobs run or end `ShutDown`; none is
/// left waiting after the close returned.
#[test]
fn submits_racing_close_all_resolve() {
    bounded(60 * SEC, || {
        for _ in 0..30 {
            let release = Arc::new(AtomicBool::new(false));
            let pool = Arc::new(saturated("inbox-close", &release));
            let p = pool.clone();
            let submitter = std::thread::spawn(move || {
                let mut jobs = Vec::new();
                while let Ok(j) = p.spawn(|_| 1u8) {
                    jobs.push(j);
                    if jobs.len() > 5000 {
                        break;
                    }
                }
                jobs
            });
            std::thread::sleep(Duration::from_micros(300));
            release.store(true, Ordering::Relaxed);
            let report = pool.close(10 * SEC);
            assert!(report.stragglers.is_empty(), "{report:?}");
            for job in submitter.join().unwrap() {
                match job.join_timeout(10 * SEC) {
                    Ok(Ok(1) | Err(JobError::ShutDown)) => {}
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => panic!("an accepted job never resolved"),
                }
            }
            let s = pool.stats();
            assert!(identity_holds(&s), "{s:?}");
            assert_eq!(s.queued, 0, "{s:?}");
        }
    });
}
