//! Floods of short jobs on a pool with a target, where submits go
//! through the inbox (pool README: "Submit without the pool lock"): every
//! count stays exact — in every `stats()` sample, after a job is seen
//! finished, with blocks, compensations and cancels racing the flood.
//! (Debug builds also check the invariants at every unlock.) Written for
//! a take without the pool lock that was built, measured and reverted
//! (the pool issue's note); they hold the locked path to the same
//! promises.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, identity_holds, SEC};
use threadward::{Job, JobError, Pool};

/// A job's work: a few microseconds on the CPU, so that the submitter
/// outruns the workers and the pool saturates (only then do submits go
/// through the inbox).
fn work() {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(3) {
        std::hint::spin_loop();
    }
}

/// A flood of short jobs on the default pool (target: the CPUs), the
/// handles kept: every job seen finished is counted by the next `stats()`,
/// whose identity holds in every sample.
#[test]
fn every_finished_job_is_counted_in_a_flood() {
    bounded(60 * SEC, || {
        let pool = Pool::builder().name("flood-count").build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut open: VecDeque<Job<()>> = VecDeque::new();
        let mut seen_done = 0u64;
        for i in 0..100_000u64 {
            let r = ran.clone();
            open.push_back(
                pool.spawn(move |_| {
                    work();
                    r.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap(),
            );
            if i % 500 == 499 {
                // Every job seen finished now must be in the next sample.
                open.retain(|j| {
                    let done = j.is_finished();
                    seen_done += u64::from(done);
                    !done
                });
                let s = pool.stats();
                assert!(identity_holds(&s), "{s:?}");
                assert!(
                    s.completed >= seen_done,
                    "{seen_done} jobs seen finished, {s:?}"
                );
            }
        }
        for j in open {
            assert_eq!(j.join_timeout(10 * SEC).ok(), Some(Ok(())));
        }
        let s = pool.stats();
        assert_eq!(s.completed, 100_000, "{s:?}");
        assert_eq!(ran.load(Ordering::Relaxed), 100_000);
        assert!(identity_holds(&s), "{s:?}");
    });
}

/// Jobs that block in a library wait (the block hook: the job gives up
/// its place) and jobs that sleep where the pool cannot see (the monitor
/// takes their place) amid a flood of short ones: every job runs once,
/// the counts are exact.
#[test]
fn blocks_and_compensations_amid_a_flood_keep_the_counts() {
    bounded(60 * SEC, || {
        let pool = Pool::builder().name("flood-block").build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let n = 40_000u64;
        for i in 0..n {
            let r = ran.clone();
            pool.execute(move |cx| {
                if i % 1000 == 0 {
                    let _ = cx.sleep(Duration::from_micros(500));
                } else if i % 250 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                work();
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            if i % 4000 == 0 {
                let s = pool.stats();
                assert!(identity_holds(&s), "{s:?}");
            }
        }
        assert!(pool.wait_idle_timeout(30 * SEC));
        assert_eq!(ran.load(Ordering::Relaxed), n as usize);
        let s = pool.stats();
        assert_eq!(s.completed, n, "{s:?}");
        assert!(identity_holds(&s), "{s:?}");
    });
}

/// Cancels racing a flood: a second thread cancels every other job as it
/// is submitted. A cancelled job ends `Cancelled` and never runs (its
/// worker took it and skips it, or the cancel killed it in a queue);
/// every other job runs; the counts add up.
#[test]
fn cancels_racing_a_flood_hold() {
    bounded(60 * SEC, || {
        let pool = Pool::builder().name("flood-cancel").build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::unbounded::<Job<u64>>();
        let canceller = std::thread::spawn(move || {
            let mut cancelled = 0u64;
            let mut kept = Vec::new();
            for (k, job) in rx.iter().enumerate() {
                if k % 2 == 0 && job.cancel() {
                    assert_eq!(job.join(), Err(JobError::Cancelled));
                    cancelled += 1;
                } else {
                    kept.push(job);
                }
            }
            let mut completed = 0u64;
            for job in kept {
                match job.join_timeout(10 * SEC) {
                    Ok(Ok(_)) => completed += 1,
                    other => panic!("a kept job ended {other:?}"),
                }
            }
            (cancelled, completed)
        });
        for i in 0..40_000u64 {
            let r = ran.clone();
            let job = pool
                .spawn(move |_| {
                    work();
                    r.fetch_add(1, Ordering::Relaxed);
                    i
                })
                .unwrap();
            tx.send(job).unwrap();
        }
        drop(tx);
        let (cancelled, completed) = canceller.join().unwrap();
        assert!(pool.wait_idle_timeout(10 * SEC));
        assert_eq!(ran.load(Ordering::Relaxed) as u64, completed);
        assert_eq!(cancelled + completed, 40_000);
        let s = pool.stats();
        assert_eq!(s.completed, completed, "{s:?}");
        assert_eq!(s.cancelled, cancelled, "{s:?}");
        assert!(identity_holds(&s), "{s:?}");
    });
}
