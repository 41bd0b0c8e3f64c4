//! Regression tests for the defects issue 19 found in the pool's
//! bookkeeping, one per defect, each named after it. Each failed on the
//! core before v2 (see the issue's note for the numbers).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, identity_holds, live_task_names, SEC};
use threadward::{Concurrency, JobError, JobHint, Pool, PoolStats};

/// A `MayBlock` job waiting for a thread was in neither `busy` nor
/// `queued`: the stats identity failed and `wait_idle` returned before the
/// job had started (65-132 times in 200).
#[test]
fn issue_19_a_may_block_job_waiting_for_a_thread_is_queued() {
    bounded(60 * SEC, || {
        let pool = Pool::builder().name("mb-wait").build().unwrap();
        for _ in 0..200 {
            let a = pool.spawn_hinted(JobHint::MayBlock, |_| ()).unwrap();
            let b = pool
                .spawn_hinted(JobHint::MayBlock, |_| {
                    std::thread::sleep(Duration::from_micros(200))
                })
                .unwrap();
            let s = pool.stats();
            assert!(identity_holds(&s), "{s:?}");
            pool.wait_idle();
            assert!(
                a.is_finished() && b.is_finished(),
                "wait_idle returned early"
            );
        }
    });
}

/// The value of a detached job is dropped on its worker; a worker blocked
/// there was forgotten: `shutdown(300 ms)` waited out the deadline and
/// reported no straggler.
#[test]
fn issue_19_a_worker_blocked_dropping_a_detached_value_is_a_straggler() {
    struct SlowDrop(crossbeam_channel::Receiver<()>);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            let _ = self.0.recv_timeout(Duration::from_secs(10));
        }
    }
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("slowdrop").build().unwrap();
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let job = pool
            .spawn(move |_| {
                go_rx.recv().unwrap();
                SlowDrop(release_rx)
            })
            .unwrap();
        let id = job.id();
        drop(job); // detached: the worker drops the value
        go_tx.send(()).unwrap();
        common::eventually(5 * SEC, "the value's drop to begin", || {
            threadward::registry::snapshot()
                .threads
                .iter()
                .any(|t| t.finishing_job == Some(id))
        });
        let report = pool.shutdown(Duration::from_millis(300));
        assert_eq!(report.stragglers.len(), 1, "{report}");
        assert_eq!(report.stragglers[0].finishing_job, Some(id), "{report}");
        assert!(report.to_string().contains("finishing"), "{report}");
        release_tx.send(()).unwrap();
    });
}

/// The liveness backstop counted starts of `MayBlock` jobs: with
/// `Limit(1)`, a `Cpu` job blocked in a foreign call and a counted job
/// queued behind it, a trickle of `MayBlock` jobs starved the queued job
/// for as long as the trickle lasted.
#[test]
fn issue_19_may_block_starts_do_not_hide_a_stalled_queue() {
    bounded(30 * SEC, || {
        let pool = Arc::new(
            Pool::builder()
                .name("backstop")
                .concurrency(Concurrency::Limit(1))
                .build()
                .unwrap(),
        );
        // A `Cpu` job blocked in a foreign call: never compensated.
        let (cpu_tx, cpu_rx) = crossbeam_channel::bounded::<()>(1);
        let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
        let _cpu = pool
            .spawn_hinted(JobHint::Cpu, move |_| {
                started_tx.send(()).unwrap();
                let _ = cpu_rx.recv_timeout(Duration::from_secs(10));
            })
            .unwrap();
        started_rx.recv_timeout(5 * SEC).unwrap();
        let submitted = Instant::now();
        let queued = pool.spawn(move |_| submitted.elapsed()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let (pool, stop) = (pool.clone(), stop.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                    let _ = pool.spawn_hinted(JobHint::MayBlock, |_| ());
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let waited = queued
            .join_timeout(Duration::from_secs(10))
            .expect("queued job never ran");
        stop.store(true, Ordering::SeqCst);
        trickle.join().unwrap();
        let _ = cpu_tx.send(());
        let waited = waited.unwrap();
        // The backstop acts after 100 ms without a counted start; the
        // trickle lasts 3 s. Before the fix the job waited for all of it.
        assert!(
            waited < Duration::from_millis(1500),
            "queued job waited {waited:?}"
        );
    });
}

/// `max_threads(2)` with `max_idle(0)`: `/proc/self/task` showed 3-4 of
/// the pool's threads during a flood of tiny jobs (an exiting worker
/// stopped counting before its thread had exited).
#[test]
fn issue_19_max_threads_bounds_os_threads_while_workers_exit() {
    bounded(60 * SEC, || {
        let pool = Arc::new(
            Pool::builder()
                .name("capx")
                .max_threads(2)
                .max_idle(0)
                .min_idle(0)
                .build()
                .unwrap(),
        );
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                let mut samples = 0;
                while !done.load(Ordering::SeqCst) {
                    let n = live_task_names()
                        .iter()
                        .filter(|n| n.starts_with("capx"))
                        .count();
                    peak = peak.max(n);
                    samples += 1;
                }
                (peak, samples)
            })
        };
        let end = Instant::now() + Duration::from_secs(2);
        let mut jobs = 0u64;
        while Instant::now() < end {
            for _ in 0..50 {
                let _ = pool.spawn(|_| std::hint::black_box(0u64));
                jobs += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(pool.wait_idle_timeout(10 * SEC));
        done.store(true, Ordering::SeqCst);
        let (peak, samples) = sampler.join().unwrap();
        let spawned = pool.stats().threads_spawned;
        assert!(
            spawned > 10,
            "the flood made workers exit and come back ({spawned} spawned)"
        );
        assert!(
            peak <= 2,
            "{peak} pool threads seen at once ({samples} samples, {jobs} jobs)"
        );
    });
}

/// `Concurrency::Limit(1)` was exceeded for a job's whole length: a worker
/// claimed for a `MayBlock` job arrived after another worker took that
/// job and spent the claim on a counted job.
///
/// The monitor may compensate one of these jobs: with the other tests of
/// this file running beside it (panicking jobs, many thread creations), a
/// context-switch record sometimes reports a worker asleep inside the
/// job's closure, and the thread's state letter confirms `S` or `D` for a
/// moment (it read "running" again microseconds later; the kernel wait
/// was not pinned down), 2 runs in 60. A compensated job lets a second
/// counted job run, as cmwq would. So a run in which the monitor acted
/// proves nothing here and is repeated; a run without any compensation
/// must never exceed the limit.
#[test]
fn issue_19_a_may_block_claim_is_never_spent_on_a_counted_job() {
    bounded(60 * SEC, || {
        let mut clean_runs = 0;
        for _ in 0..20 {
            if let Some(s) = may_block_claim_round() {
                assert_eq!(s.1, 1, "Limit(1) exceeded with no compensation: {:?}", s.0);
                clean_runs += 1;
                if clean_runs == 2 {
                    return;
                }
            }
        }
        panic!("the monitor acted in every run: {clean_runs} clean run(s) of 20");
    });
}

/// One round: a flood of counted 20 µs jobs beside a trickle of
/// `MayBlock` jobs on a `Limit(1)` pool; the pool's stats and the most
/// counted jobs seen running at once, or `None` if the monitor
/// compensated a job meanwhile.
fn may_block_claim_round() -> Option<(PoolStats, usize)> {
    let pool = Arc::new(
        Pool::builder()
            .name("typed")
            .concurrency(Concurrency::Limit(1))
            .min_idle(2)
            .build()
            .unwrap(),
    );
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let may_block = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            for _ in 0..3000 {
                let _ = pool.spawn_hinted(JobHint::MayBlock, |_| ());
                std::thread::yield_now();
            }
        })
    };
    for _ in 0..3000 {
        let (active, peak) = (active.clone(), peak.clone());
        let _ = pool.spawn(move |_| {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    may_block.join().unwrap();
    assert!(pool.wait_idle_timeout(20 * SEC));
    let s = pool.stats();
    // A run in which the monitor compensated a job or the liveness
    // backstop opened a place (a worker descheduled for 100 ms on a loaded
    // machine) may rightly run two counted jobs: it proves nothing here.
    (s.compensated == 0 && s.backstops == 0).then(|| (s, peak.load(Ordering::SeqCst)))
}

/// `close(5 s)` from inside a job under `Limit(1)`, with a job queued and
/// a spare parked: the queued job was dropped as `ShutDown` within 0.2 ms
/// instead of being run.
#[test]
fn issue_19_close_from_inside_a_job_runs_the_queued_jobs() {
    bounded(30 * SEC, || {
        let pool = Arc::new(
            Pool::builder()
                .name("close-in")
                .concurrency(Concurrency::Limit(1))
                .min_idle(1)
                .build()
                .unwrap(),
        );
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let p = pool.clone();
        let closer = pool
            .spawn(move |_| {
                go_rx.recv().unwrap();
                p.close(Duration::from_secs(5))
            })
            .unwrap();
        common::eventually(5 * SEC, "the closer to run", || pool.stats().running == 1);
        let queued = pool.spawn(|_| 42).unwrap();
        go_tx.send(()).unwrap();
        assert_eq!(
            queued.join_timeout(10 * SEC).ok(),
            Some(Ok(42)),
            "the queued job must run"
        );
        let report = closer.join().unwrap();
        assert_eq!(report.cancelled_queued, 0, "{report}");
    });
}

/// `shutdown(Duration::ZERO)` returned before the running jobs' stops
/// were requested (the requests ran on a helper a zero deadline does not
/// wait for): a job that shut its own pool down saw `should_stop() ==
/// false`, and `stopped_running` read 0.
#[test]
fn issue_19_shutdown_zero_sets_every_stop_flag_before_returning() {
    bounded(60 * SEC, || {
        for _ in 0..30 {
            let pool = Arc::new(Pool::builder().name("zero").build().unwrap());
            // Another job, whose token we hold.
            let (tok_tx, tok_rx) = crossbeam_channel::bounded(1);
            let _other = pool
                .spawn(move |cx| {
                    tok_tx.send(cx.token().clone()).unwrap();
                    let _ = cx.sleep(Duration::from_secs(30));
                })
                .unwrap();
            let token = tok_rx.recv_timeout(5 * SEC).unwrap();
            let p = pool.clone();
            let own = pool
                .spawn(move |cx| {
                    let report = p.shutdown(Duration::ZERO);
                    (cx.should_stop(), report.stopped_running)
                })
                .unwrap();
            let (saw_stop, stopped) = own.join_timeout(10 * SEC).unwrap().unwrap();
            assert!(saw_stop, "the job's own stop flag was not set");
            assert_eq!(stopped, 2);
            assert!(token.stop_requested());
            drop(pool);
        }
    });
}

/// `let _ = thread.stop_timeout(d)` hung for ever when the thread did not
/// stop: the handle given back in `Err` joined when dropped.
#[test]
fn issue_19_let_underscore_stop_timeout_stays_bounded() {
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    bounded(10 * SEC, move || {
        let t = threadward::spawn("stubborn", move |_| {
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
        let start = Instant::now();
        let _ = t.stop_timeout(Duration::from_millis(50));
        let t2 = threadward::spawn("stubborn2", {
            let r = release.clone();
            move |_| {
                while !r.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
        .unwrap();
        let _ = t2.join_timeout(Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(5));
        release.store(true, Ordering::SeqCst);
    });
}

/// Cancelling every job of a queue resolves each once (a sanity check of
/// the cancel path through the new core).
#[test]
fn cancelled_queued_jobs_resolve_once_and_keep_the_identity() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("cancel")
            .max_threads(1)
            .build()
            .unwrap();
        let blocker = common::running_sleeper(&pool);
        let jobs: Vec<_> = (0..100).map(|i| pool.spawn(move |_| i).unwrap()).collect();
        for j in &jobs {
            assert!(j.cancel());
            assert!(identity_holds(&pool.stats()));
        }
        for j in jobs {
            assert_eq!(j.join(), Err(JobError::Cancelled));
        }
        blocker.cancel();
        assert!(pool.wait_idle_timeout(10 * SEC));
        assert!(identity_holds(&pool.stats()));
    });
}

/// A job's thread-local value whose destructor blocks (for as long as
/// `SLOW_TLS_FOR`), set on the worker the job runs on.
struct SlowTls;

impl Drop for SlowTls {
    fn drop(&mut self) {
        std::thread::sleep(SLOW_TLS_FOR);
    }
}

const SLOW_TLS_FOR: Duration = Duration::from_secs(3);

thread_local! {
    static SLOW: std::cell::RefCell<Option<SlowTls>> = const { std::cell::RefCell::new(None) };
}

fn set_slow_tls() {
    SLOW.with(|s| *s.borrow_mut() = Some(SlowTls));
}

/// Threads count until their exit ended, and a shutdown joins the ones
/// that left — but only once they are gone: a worker whose exit blocks in
/// a job's thread-local destructor is detached at the deadline, and
/// `threads` then counts only stragglers (none here).
#[test]
fn shutdown_keeps_its_deadline_when_a_leaving_workers_exit_blocks() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("tls-exit").build().unwrap();
        pool.spawn(|_| set_slow_tls()).unwrap().join().unwrap();
        let start = Instant::now();
        let report = pool.shutdown(Duration::from_millis(200));
        let took = start.elapsed();
        assert!(report.stragglers.is_empty(), "{report}");
        assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
        assert_eq!(pool.stats().threads, 0);
    });
}

/// The process-wide manager joins a thread that left only once it is
/// gone: a worker of one pool whose exit blocks in a job's thread-local
/// destructor does not hold up thread creation for another pool.
#[test]
fn a_blocked_worker_exit_does_not_stall_the_manager() {
    bounded(30 * SEC, || {
        let a = Pool::builder()
            .name("tls-a")
            .min_idle(0)
            .max_idle(0)
            .build()
            .unwrap();
        // The job's worker parks over `max_idle(0)`: it exits at once,
        // and its exit blocks in the destructor.
        a.spawn(|_| set_slow_tls()).unwrap().join().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let b = Pool::builder()
            .name("tls-b")
            .min_idle(0)
            .concurrency(Concurrency::Unlimited)
            .build()
            .unwrap();
        let start = Instant::now();
        // Two jobs that must run at once: the second needs a thread from
        // the manager.
        common::run_together(&b, 2);
        let took = start.elapsed();
        assert!(took < SLOW_TLS_FOR / 2, "the manager was held up: {took:?}");
    });
}

// The hot path: one allocation per job, the stop state made on first use.

/// The closure of a cancelled job goes at the cancel, not with the last
/// handle: what it captured (here a channel's sender) is released at once.
#[test]
fn cancel_drops_the_closure_at_once() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("cdrop")
            .max_threads(1)
            .build()
            .unwrap();
        let blocker = common::running_sleeper(&pool);
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let job = pool.spawn(move |_| drop(tx)).unwrap();
        assert!(job.cancel());
        // The handle is alive; the sender must be gone already.
        assert_eq!(
            rx.recv_timeout(Duration::ZERO),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        assert_eq!(job.join(), Err(JobError::Cancelled));
        blocker.cancel();
        assert!(pool.wait_idle_timeout(10 * SEC));
    });
}

/// A refused job's closure is dropped by `spawn`, contained: a capture
/// that panics when dropped does not unwind out of `spawn`.
#[test]
fn a_refused_jobs_closure_is_dropped_and_contained() {
    struct Bomb(Arc<AtomicUsize>);
    impl Drop for Bomb {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("a capture's drop panics");
        }
    }
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("refuse").build().unwrap();
        let _ = pool.shutdown(SEC);
        let drops = Arc::new(AtomicUsize::new(0));
        let bomb = Bomb(drops.clone());
        let out = pool.spawn(move |_| drop(bomb));
        assert!(matches!(out, Err(threadward::SpawnError::ShutDown)));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

/// A job that never looks at its token (so has no stop state yet) still
/// sees a stop requested by `cancel` through `should_stop`, and one that
/// makes its token later sees the same stop.
#[test]
fn a_stop_before_the_job_made_its_stop_state_is_seen() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("lazy").build().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = pool
            .spawn(move |cx| {
                tx.send(()).unwrap();
                let mut spins = 0u64;
                while !cx.should_stop() {
                    spins += 1;
                    std::thread::yield_now();
                }
                // The token made now is the stopped one.
                (
                    spins,
                    cx.token().stop_requested(),
                    cx.sleep(Duration::from_secs(30)),
                )
            })
            .unwrap();
        rx.recv_timeout(10 * SEC).unwrap();
        assert!(!job.cancel(), "running: its stop is requested instead");
        let (_, token_stopped, slept) = job.join_timeout(10 * SEC).unwrap().unwrap();
        assert!(token_stopped);
        assert!(slept.is_err(), "a stopped job's wait returns at once");
    });
}

/// Cancelling queued jobs never scans the queue: 50 000 jobs queued
/// behind a blocked worker, cancelled newest first (the worst order for a
/// scan from the front), then the worker freed. Every cancelled job
/// resolves `Cancelled`, the identity holds throughout, and a job
/// submitted after them runs (the dead entries are passed over). The
/// bound is a hang bound: a scan per cancel made this O(n²).
#[test]
fn cancelling_a_long_queue_is_linear_and_keeps_the_identity() {
    bounded(60 * SEC, || {
        let pool = Pool::builder()
            .name("cancel-long")
            .max_threads(1)
            .build()
            .unwrap();
        let blocker = common::running_sleeper(&pool);
        let jobs: Vec<_> = (0..50_000u32)
            .map(|i| pool.spawn(move |_| i).unwrap())
            .collect();
        assert_eq!(pool.stats().queued, 50_000);
        for (n, j) in jobs.iter().rev().enumerate() {
            assert!(j.cancel());
            if n % 5_000 == 0 {
                let s = pool.stats();
                assert!(identity_holds(&s), "{s:?}");
                assert_eq!(s.queued, 50_000 - n - 1);
            }
        }
        assert_eq!(pool.stats().queued, 0);
        let last = pool.spawn(|_| "ran").unwrap();
        blocker.cancel();
        assert_eq!(last.join_timeout(10 * SEC).unwrap(), Ok("ran"));
        for j in jobs {
            assert_eq!(j.join(), Err(JobError::Cancelled));
        }
        assert!(pool.wait_idle_timeout(10 * SEC));
        let s = pool.stats();
        assert!(identity_holds(&s), "{s:?}");
        assert_eq!(s.cancelled, 50_000);
    });
}

/// Shutdown pacing waits for the exits of the workers that left before,
/// but never blindly: 16 workers whose exits all block in a job's
/// thread-local destructor (3 s) do not make a shutdown wait for them one
/// after another, nor at all beyond `PACE_WAIT` each at once. The pool
/// reports no straggler (their jobs ended) and counts no thread.
#[test]
fn shutdown_pacing_gives_up_on_exits_that_do_not_end() {
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .name("pace")
            .concurrency(Concurrency::Unlimited)
            .build()
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let jobs: Vec<_> = (0..16)
            .map(|_| {
                let tx = tx.clone();
                pool.spawn(move |cx| {
                    set_slow_tls();
                    tx.send(()).unwrap();
                    let _ = cx.sleep(Duration::from_secs(60));
                })
                .unwrap()
            })
            .collect();
        for _ in 0..16 {
            rx.recv_timeout(10 * SEC).unwrap();
        }
        let start = Instant::now();
        let report = pool.shutdown(10 * SEC);
        let took = start.elapsed();
        assert!(
            took < SLOW_TLS_FOR / 2,
            "shutdown waited on exits: {took:?}"
        );
        assert!(report.stragglers.is_empty(), "{report}");
        assert_eq!(pool.stats().threads, 0);
        for j in jobs {
            assert!(j.join_timeout(SEC).is_ok());
        }
    });
}

/// `Pool::execute`: handle-free jobs run, a panicking one is contained and
/// counted, and a refused one is dropped (not run) with the refusal said.
#[test]
fn execute_runs_counts_panics_and_refuses_after_shutdown() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("exec").build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for i in 0..1_000 {
            let ran = ran.clone();
            pool.execute(move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
                assert!(i % 100 != 7, "job {i} panics");
            })
            .unwrap();
        }
        assert!(pool.wait_idle_timeout(10 * SEC));
        let s = pool.stats();
        assert_eq!(ran.load(Ordering::SeqCst), 1_000);
        assert_eq!((s.completed, s.panicked), (990, 10), "{s:?}");
        assert!(identity_holds(&s));
        let _ = pool.shutdown(SEC);
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let out = pool.execute(move |_| drop(tx));
        assert!(matches!(out, Err(threadward::SpawnError::ShutDown)));
        // Refused: the closure is gone (its sender dropped) and never ran.
        assert_eq!(
            rx.recv_timeout(Duration::ZERO),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
    });
}
