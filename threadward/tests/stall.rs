//! A pool that is stuck says so: jobs waiting for a thread at
//! `max_threads` longer than the stall threshold give one warning per
//! episode, an incident in the snapshot and `PoolStats::stalls`; a pool
//! that makes progress does not.

mod common;

use std::time::Duration;

use common::{bounded, eventually, gate, SEC};
use threadward::registry::IncidentKind;
use threadward::{Concurrency, Pool};

#[test]
fn jobs_waiting_at_max_threads_are_reported_once_per_episode() {
    bounded(60 * SEC, || {
        let pool = Pool::builder()
            .name("stalled")
            .concurrency(Concurrency::Unlimited)
            .max_threads(2)
            .min_idle(0)
            .stall_warning(Duration::from_millis(100))
            .build()
            .unwrap();
        let hold = || pool.spawn(|cx| cx.sleep(Duration::from_secs(60))).unwrap();
        let (a, b) = (hold(), hold());
        eventually(10 * SEC, "both threads busy", || pool.stats().busy == 2);
        let waiting = pool.spawn(|_| "served").unwrap();
        eventually(10 * SEC, "the stall reported", || pool.stats().stalls == 1);
        let incident = threadward::registry::snapshot()
            .incidents
            .into_iter()
            .find(|i| i.kind == IncidentKind::PoolStalled && i.message.contains("stalled"));
        assert!(incident.is_some(), "no PoolStalled incident names the pool");
        // Still stalled later: no second report for the same episode.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(pool.stats().stalls, 1);
        // Freed: the waiting job runs; the episode ends.
        a.cancel();
        assert_eq!(waiting.join_timeout(10 * SEC).unwrap(), Ok("served"));
        // A new episode is a new report.
        let c = hold();
        eventually(10 * SEC, "both threads busy again", || {
            pool.stats().busy == 2
        });
        let again = pool.spawn(|_| ()).unwrap();
        eventually(10 * SEC, "the second stall reported", || {
            pool.stats().stalls == 2
        });
        b.cancel();
        c.cancel();
        assert!(again.join_timeout(10 * SEC).is_ok());
    });
}

#[test]
fn a_busy_pool_that_makes_progress_is_not_stalled() {
    bounded(60 * SEC, || {
        let pool = Pool::builder()
            .name("busy")
            .max_threads(1)
            .min_idle(0)
            .stall_warning(Duration::from_millis(300))
            .build()
            .unwrap();
        // 50 jobs of 20 ms behind one thread: 1 s of queue, over three
        // thresholds, but a job starts every 20 ms. (A 100 ms threshold
        // made an 80 ms descheduling of the worker a stall.)
        let jobs: Vec<_> = (0..50)
            .map(|_| {
                pool.spawn(|cx| cx.sleep(Duration::from_millis(20)))
                    .unwrap()
            })
            .collect();
        for j in jobs {
            assert!(j.join_timeout(30 * SEC).is_ok());
        }
        assert_eq!(pool.stats().stalls, 0);
    });
}

/// Refusals at capacity: each counts in `PoolStats::refused`; the first of
/// an episode (until a job is accepted again) records one incident.
#[test]
fn refusals_at_capacity_are_counted_and_reported_once_per_episode() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("refuser")
            .max_threads(1)
            .min_idle(0)
            .queue(threadward::Queue::Handoff)
            .build()
            .unwrap();
        let incidents = || {
            threadward::registry::snapshot()
                .incidents
                .into_iter()
                .filter(|i| i.kind == IncidentKind::PoolRefusing && i.message.contains("refuser"))
                .count()
        };
        let busy = pool.spawn(|cx| cx.sleep(Duration::from_secs(60))).unwrap();
        for _ in 0..5 {
            assert!(matches!(
                pool.spawn(|_| ()),
                Err(threadward::SpawnError::AtCapacity)
            ));
        }
        assert_eq!(pool.stats().refused, 5);
        assert_eq!(incidents(), 1);
        busy.cancel();
        assert!(pool.wait_idle_timeout(10 * SEC));
        // (A handoff needs the worker parked, not on its way there.)
        eventually(10 * SEC, "the worker parked", || pool.stats().idle == 1);
        // Accepted again: the episode ended; the next refusal starts another.
        let busy = pool.spawn(|cx| cx.sleep(Duration::from_secs(60))).unwrap();
        assert!(pool.spawn(|_| ()).is_err());
        assert_eq!((pool.stats().refused, incidents()), (6, 2));
        busy.cancel();
    });
}

/// The watchdog reports a job running past its threshold once (stats and
/// the snapshot's mark), quick jobs never.
#[test]
fn the_watchdog_reports_a_long_job_once() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("watched")
            .concurrency(Concurrency::Unlimited)
            .watchdog(Duration::from_millis(300))
            .build()
            .unwrap();
        // Quick jobs are not reported (300 ms: a loaded machine may hold a
        // no-op job off its CPU for 100 ms, which is no overrun of its own).
        for _ in 0..50 {
            pool.spawn(|_| ()).unwrap();
        }
        assert!(pool.wait_idle_timeout(10 * SEC));
        assert_eq!(pool.stats().overdue, 0);
        // A foreign block (not a library wait): the watchdog sees it too.
        // It lasts until the test let it go (a std channel), so the
        // snapshot is taken while it runs, however late.
        let (go, wait) = gate();
        let long = pool
            .spawn(move |_| {
                wait.wait();
            })
            .unwrap();
        eventually(10 * SEC, "the long job reported", || {
            pool.stats().overdue == 1
        });
        let marked = threadward::registry::snapshot()
            .threads
            .into_iter()
            .any(|t| t.overdue && t.name.starts_with("watched"));
        assert!(marked, "the snapshot marks the overdue job");
        // Three more watchdog periods running: still reported once.
        std::thread::sleep(Duration::from_millis(900));
        go.open();
        long.join_timeout(10 * SEC).unwrap().unwrap();
        // Once per job, however long it ran.
        assert_eq!(pool.stats().overdue, 1);
    });
}
