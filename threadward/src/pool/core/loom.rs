//! loom models of the dispatch protocol (`core.rs`): a lost job shows up
//! as a deadlock, which loom reports. CI runs them with
//! `LOOM_MAX_PREEMPTIONS=3` (all pass at 4, ~1 min).

use super::*;
use crate::sync::{thread, Arc};

impl QueuedJob for u64 {
    fn id(&self) -> u64 {
        *self
    }
    fn stop_source(&self) -> Option<StopSource> {
        None
    }
}

fn config(min_idle: usize, max_threads: usize, target: Option<usize>) -> Config {
    Config::for_models(min_idle, max_threads, target)
}

fn core(min_idle: usize, max_threads: usize) -> Arc<Core<u64>> {
    Arc::new(Core::new(config(min_idle, max_threads, None)))
}

/// A worker that runs jobs until `jobs` of them ran or it exits.
fn worker(core: Arc<Core<u64>>, no: u64, jobs: usize) -> (usize, bool) {
    let mut ran = 0;
    let mut first = true;
    loop {
        match core.next(no, first, |_| {}) {
            Next::Run(_) => {
                ran += 1;
                core.report(no, Outcome::Completed, &mut || {}, false);
                if ran == jobs {
                    // Leave as if stopped (the thread stays counted).
                    return (ran, false);
                }
            }
            Next::Exit => {
                core.exit(no, false, false);
                return (ran, true);
            }
        }
        first = false;
    }
}

/// Issue 10 item 2: submitters racing on an empty `max_threads(1)`
/// pool. The cap is checked and the thread reserved in the same
/// critical section as the push: exactly one submitter is told to
/// create a worker, and `threads` never exceeds 1.
#[test]
fn loom_cap_reservation_racing_submitters() {
    for queue in [Queue::Unbounded, Queue::Handoff] {
        loom::model(move || {
            let c = Arc::new(Core::new(Config {
                queue,
                ..config(0, 1, None)
            }));
            let c2 = c.clone();
            let other = thread::spawn(move || c2.submit(1).map_err(|(_, r)| r));
            let mine = c.submit(2).map_err(|(_, r)| r);
            let theirs = other.join().unwrap();
            let creators = [mine, theirs]
                .iter()
                .filter(|r| matches!(r, Ok(Submitted::CreateWorker(_))))
                .count();
            assert_eq!(creators, 1, "{mine:?} {theirs:?}");
            let st = c.lock();
            assert_eq!(st.threads, 1);
            if queue == Queue::Handoff {
                // Nothing waits without a worker on its way.
                assert!(
                    [mine, theirs].contains(&Err(Refusal::AtCapacity)),
                    "{mine:?} {theirs:?}"
                );
                assert_eq!(st.queue.len(), 1);
            }
        });
    }
}

/// Issue 10 item 8: a job on a worker created for it (its first
/// `next`) waits for the pool to go idle from inside while another job
/// comes and goes on a second worker: it waits for the other job only,
/// and does not deadlock on itself.
#[test]
fn loom_fresh_worker_waits_idle_from_inside() {
    loom::model(|| {
        let c = core(0, 2);
        let Ok(Submitted::CreateWorker(a)) = c.submit(1) else {
            panic!("an empty pool asks the submitter for a worker");
        };
        let c2 = c.clone();
        let fresh = thread::spawn(move || {
            let Next::Run(_) = c2.next(a, true, |_| {}) else {
                panic!("the fresh worker takes the job it was created for");
            };
            // The job: wait for every job but itself.
            assert!(c2.wait_until(None, |st| st.busy <= 1 && st.queue.is_empty()));
            c2.report(a, Outcome::Completed, &mut || {}, false);
        });
        // The second job gets a worker from the manager (played here).
        let b = match c.submit(2) {
            Ok(Submitted::CreateWorker(b)) => b,
            Ok(Submitted::Queued | Submitted::Waiting) => {
                c.manager_next().expect("a worker for the queued job")
            }
            Err((_, r)) => panic!("refused: {r:?}"),
        };
        worker(c.clone(), b, 1);
        fresh.join().unwrap();
        let st = c.lock();
        assert_eq!(st.busy, 0);
    });
}

/// tokio loom_blocking "a job submitted while the only worker goes
/// idle still runs": the submit races the worker's check-then-park.
/// A lost job shows up as a deadlock, which loom reports.
#[test]
fn loom_spawn_vs_worker_going_idle() {
    loom::model(|| submit_vs_parking(core(1, 1)));
}

/// One worker, one job submitted while the worker may be parking.
fn submit_vs_parking(c: Arc<Core<u64>>) {
    let no = c.reserve();
    let c2 = c.clone();
    let w = thread::spawn(move || worker(c2, no, 1));
    c.submit(7).unwrap_or_else(|_| panic!("refused"));
    let (ran, _) = w.join().unwrap();
    assert_eq!(ran, 1);
    assert_eq!(c.lock().counters.completed, 1);
}

/// Spawn racing shutdown always resolves: either refused, or queued and
/// then taken by shutdown, or run. Never left in the queue.
#[test]
fn loom_spawn_vs_shutdown() {
    loom::model(|| {
        let c = core(1, 1);
        let no = c.reserve();
        let c2 = c.clone();
        let w = thread::spawn(move || worker(c2, no, usize::MAX));
        let c3 = c.clone();
        let s = thread::spawn(move || c3.submit(1).map(|_| ()).map_err(|(_, r)| r));
        let (taken, _) = c.begin_shutdown();
        let submitted = s.join().unwrap();
        let (ran, exited) = w.join().unwrap();
        assert!(exited);
        let st = c.lock();
        match submitted {
            Err(r) => assert_eq!(r, Refusal::ShutDown),
            Ok(()) => assert_eq!(taken.len() + ran, 1, "queued job vanished"),
        }
        assert!(st.queue.is_empty());
        assert_eq!(st.threads, 0);
    });
}

/// Idle reaping racing a new job: the manager's idle timer may fire at
/// any point around a submit; the job still runs, and a reaped worker
/// is never also handed the job.
#[test]
fn loom_idle_reap_vs_new_job() {
    reap_vs_new_job(2);
}

/// The same at `max_threads = 1`, where the submit cannot ask for a new
/// thread: found by shuttle (a job queued while the only worker held a
/// reap ticket was stranded). The reaped worker now runs it instead.
#[test]
fn loom_idle_reap_vs_new_job_at_max_threads() {
    reap_vs_new_job(1);
}

fn reap_vs_new_job(max_threads: usize) {
    loom::model(move || {
        let c = core(0, max_threads);
        let a = c.reserve();
        let c2 = c.clone();
        let wa = thread::spawn(move || worker(c2, a, 1));
        // Wait until the worker is parked, then race reap vs submit.
        loop {
            let mut st = c.lock();
            if st.idle() == 1 {
                // The manager took the parking's wake-up and is in its
                // idle window (the reaper thread below is its timeout).
                st.manager_notified = false;
                st.idle_deadline = Some(Instant::now() + Duration::from_secs(3600));
                break;
            }
            drop(st);
            thread::yield_now();
        }
        let c3 = c.clone();
        let reaper = thread::spawn(move || {
            let mut st = c3.lock();
            st.idle_low = 1; // parked through a whole window
            drop(c3.reap_idle(st));
        });
        let submitted = c.submit(5).map_err(|(_, r)| r);
        reaper.join().unwrap();
        // Reaped and gone before the submit: the submitter creates a
        // worker for its job (an empty pool).
        let created = matches!(submitted, Ok(Submitted::CreateWorker(_)));
        let (ran, exited) = wa.join().unwrap();
        let st = c.lock();
        match submitted {
            Err(r) => panic!("refused: {r:?}"),
            Ok(_) if created => assert!(exited),
            Ok(_) if exited => {
                assert_eq!(ran, 0);
                assert_eq!(st.queue.len(), 1, "job lost with the reaped worker");
                assert!(
                    st.manager_notified && c.deficit(&st) > 0,
                    "nobody will create a worker for it"
                );
            }
            Ok(_) => assert_eq!(ran, 1),
        }
    });
}

/// `wait_until` (wait_idle, shutdown) racing the worker that finishes
/// the last job: `done_cv` is only notified when a waiter is counted,
/// so a waiter that registers late must still see the idle state.
#[test]
fn loom_wait_idle_vs_job_finishing() {
    loom::model(|| {
        let c = core(0, 1);
        let no = c.reserve();
        c.submit(3).unwrap_or_else(|_| panic!("refused"));
        let c2 = c.clone();
        let w = thread::spawn(move || {
            let Next::Run(_) = c2.next(no, true, |_| {}) else {
                panic!("no job");
            };
            c2.report(no, Outcome::Completed, &mut || {}, false);
        });
        assert!(c.wait_until(None, |st| st.busy == 0 && st.queue.is_empty()));
        w.join().unwrap();
    });
}

fn managed(target: usize, max_threads: usize) -> Arc<Core<u64>> {
    Arc::new(Core::new(config(0, max_threads, Some(target))))
}

/// A worker until shutdown; job 1 "blocks" (through the hook) until
/// job 2 has been taken by someone, then unblocks and ends.
fn blocking_worker(c: Arc<Core<u64>>, no: u64) {
    let mut first = true;
    while let Next::Run(job) = c.next(no, first, |_| {}) {
        first = false;
        if job == 1 {
            c.blocking(no, true);
            while !c.lock().queue.is_empty() {
                thread::yield_now();
            }
            c.blocking(no, false);
        }
        c.report(no, Outcome::Completed, &mut || {}, false);
    }
    c.exit(no, first, false);
}

/// Issue 11: the block hook racing dispatch. Target 1, two workers,
/// two jobs: job 2 waits for room, which only job 1 blocking makes.
/// If the hook did not hand the room to the parked worker, job 1 would
/// spin for ever (loom reports it).
#[test]
fn loom_block_hook_vs_dispatch() {
    loom::model(|| {
        let c = managed(1, 2);
        let a = c.reserve();
        let b = c.reserve();
        let (c1, c2) = (c.clone(), c.clone());
        let ta = thread::spawn(move || blocking_worker(c1, a));
        let tb = thread::spawn(move || blocking_worker(c2, b));
        c.submit(1).unwrap_or_else(|_| panic!("refused"));
        c.submit(2).unwrap_or_else(|_| panic!("refused"));
        assert!(c.wait_until(None, |st| st.counters.completed == 2));
        drop(c.begin_shutdown());
        ta.join().unwrap();
        tb.join().unwrap();
        let st = c.lock();
        assert_eq!((st.running, st.busy, st.threads), (0, 0, 0));
    });
}

/// Issue 11: the monitor's verdict racing the job's end. Whatever the
/// order, `running` never underflows (debug builds check every
/// decrement) and ends at 0, and a job compensated after it ended is
/// left alone.
#[test]
fn loom_compensate_vs_job_end() {
    loom::model(|| {
        let c = managed(1, 1);
        let a = c.reserve();
        c.submit(1).unwrap_or_else(|_| panic!("refused"));
        let Next::Run(_) = c.next(a, true, |_| {}) else {
            panic!("no job");
        };
        let c2 = c.clone();
        let monitor = thread::spawn(move || c2.compensate(a, 1, false));
        c.report(a, Outcome::Completed, &mut || {}, false);
        let compensated = monitor.join().unwrap();
        let st = c.lock();
        // A finished job keeps its place in `running` for the worker's
        // next `next`, unless the monitor had taken it out before.
        assert_eq!(st.running, usize::from(!compensated));
        assert_eq!(st.counters.compensated_blocked, u64::from(compensated));
    });
}

/// Issue 11: a submit racing a worker parking, with a target: the job
/// queued while the only worker parks is run (by that worker, woken,
/// or taken on its way to park), never stranded.
#[test]
fn loom_submit_vs_worker_parking_with_a_target() {
    loom::model(|| submit_vs_parking(managed(1, 1)));
}

/// The real worker loop's hand-over (`report` with `take_next`): a
/// submit racing a worker that finishes its job. The new job is handed
/// over in the report's critical section, or found by `next`, or the
/// worker parks and the submit wakes it: never stranded (a lost job is
/// a deadlock in `wait_until`, which loom reports).
#[test]
fn loom_keep_working_hand_over_vs_submit() {
    loom::model(|| {
        let c = managed(1, 1);
        let a = c.reserve();
        c.submit(1).unwrap_or_else(|_| panic!("refused"));
        let c2 = c.clone();
        let w = thread::spawn(move || {
            let mut first = true;
            let mut handed = None;
            loop {
                let job = match handed.take() {
                    Some(j) => j,
                    None => match c2.next(a, first, |_| {}) {
                        Next::Run(j) => j,
                        Next::Exit => break,
                    },
                };
                first = false;
                let _ = job;
                handed = c2.report(a, Outcome::Completed, &mut || {}, true);
            }
            c2.exit(a, first, false);
        });
        c.submit(2).unwrap_or_else(|_| panic!("refused"));
        assert!(c.wait_until(None, |st| st.counters.completed == 2));
        drop(c.begin_shutdown());
        w.join().unwrap();
        let st = c.lock();
        assert_eq!((st.running, st.busy, st.threads), (0, 0, 0));
    });
}
