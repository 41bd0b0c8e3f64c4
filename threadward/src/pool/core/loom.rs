//! loom models of the pool's state machine. They drive the shipped
//! functions: every worker runs [`Core::work`] (the loop the pool's
//! threads run), every submit is [`Core::submit`], the manager's side is
//! `manager_step` (through `manager_next`), and an exit is joined through
//! the same chain as in the pool. The invariants are checked at every
//! unlock (`Locked`), and a lost job or wake-up shows up as a deadlock,
//! which loom reports. CI runs them with `LOOM_MAX_PREEMPTIONS=3`.

use std::time::{Duration, Instant};

use super::state::{Config, Queue};
use super::{
    model_job, Block, Core, ModelJob, Outcome, Refusal, Report, Submitted, Verdict, WorkerSide,
    MAY_BLOCK,
};
use crate::sync::{thread, Arc};

fn config(min_idle: usize, max_threads: usize, target: Option<usize>) -> Config {
    Config::for_models(min_idle, max_threads, target)
}

fn plain(min_idle: usize, max_threads: usize) -> Arc<Core<ModelJob>> {
    Arc::new(Core::new(config(min_idle, max_threads, None)))
}

fn managed(target: usize, max_threads: usize) -> Arc<Core<ModelJob>> {
    Arc::new(Core::new(config(0, max_threads, Some(target))))
}

/// A model worker's side: job `blocks` (if any) blocks through the hook
/// until no counted job is queued, as a job waiting for another would;
/// job `FOREIGN` waits, unseen by the pool, until another job completed.
struct Side {
    core: Arc<Core<ModelJob>>,
    me: u64,
    blocks: Option<u64>,
}

/// The model job that blocks where the pool cannot see.
const FOREIGN: u64 = 99;

impl WorkerSide<ModelJob> for Side {
    fn run(&self, job: ModelJob, report: Report<'_>) {
        if job.0 == FOREIGN {
            // Not through the block hook (`me: None`): the pool's counts
            // do not see this wait.
            self.core
                .wait_until(None, None, |st| st.counters.completed >= 1);
        }
        if self.blocks == Some(job.0) {
            self.core.block(self.me, Block::Enter);
            while !self.core.lock().queue.is_empty() {
                thread::yield_now();
            }
            self.core.block(self.me, Block::Leave);
        }
        report(Outcome::Completed, &mut || {});
    }
    fn set_idle(&self, _: bool) {}
}

/// Starts reserved worker `no` on a model thread, as `start_worker` does.
fn start(c: &Arc<Core<ModelJob>>, no: u64, blocks: Option<u64>) {
    let c2 = c.clone();
    let h = thread::spawn(move || {
        let side = Side {
            core: c2.clone(),
            me: no,
            blocks,
        };
        c2.work(no, &side)
    });
    c.spawned(no, None, Box::new(h));
}

/// A reserved spare, started.
fn spare(c: &Arc<Core<ModelJob>>, blocks: Option<u64>) {
    let no = c.reserve();
    start(c, no, blocks);
}

/// Target 1, one spare worker, jobs 1 and 2 submitted: one runs (or is
/// about to), one waits, so the pool is saturated.
fn two_jobs_one_worker() -> Arc<Core<ModelJob>> {
    let c = managed(1, 1);
    spare(&c, None);
    submit(&c, 1).expect("accepted");
    submit(&c, 2).expect("accepted");
    c
}

/// Submits `job`, creating the thread the submit reserved for it.
fn submit(c: &Arc<Core<ModelJob>>, job: u64) -> Result<Submitted, Refusal> {
    let r = c.submit(model_job(job)).map_err(|(_, r)| r);
    if let Ok(Submitted::CreateWorker(no)) = r {
        start(c, no, None);
    }
    r
}

/// Shuts down and waits for every worker to leave and be joined (as
/// `Pool::shutdown`'s `finish` does).
fn finish(c: &Arc<Core<ModelJob>>) -> usize {
    let (taken, _) = c.begin_shutdown();
    assert!(c.wait_members(None, None));
    c.settle_exits(None);
    let st = c.lock();
    assert_eq!((st.threads, st.busy, st.running), (0, 0, 0));
    taken.len()
}

/// Issue 10 item 2: submitters racing on an empty `max_threads(1)`
/// pool. The cap is checked and the thread reserved in the same
/// critical section as the push: exactly one submitter is told to
/// create a worker, and `threads` never exceeds 1.
#[test]
fn loom_cap_reservation_racing_submitters() {
    for queue in [Queue::Unbounded, Queue::Handoff] {
        loom::model(move || {
            let c = Arc::new(Core::<ModelJob>::new(Config {
                queue,
                ..config(0, 1, None)
            }));
            let c2 = c.clone();
            let other = thread::spawn(move || c2.submit(model_job(1)).map_err(|(_, r)| r));
            let mine = c.submit(model_job(2)).map_err(|(_, r)| r);
            let theirs = other.join().unwrap();
            let creators = [mine, theirs]
                .iter()
                .filter(|r| matches!(r, Ok(Submitted::CreateWorker(_))))
                .count();
            assert_eq!(creators, 1, "{mine:?} {theirs:?}");
            let st = c.lock();
            assert_eq!(st.threads, 1);
            if queue == Queue::Handoff {
                assert!([mine, theirs].contains(&Err(Refusal::AtCapacity)));
            }
        });
    }
}

/// tokio loom_blocking "a job submitted while the only worker goes
/// idle still runs": the submit races the worker's check-then-park.
#[test]
fn loom_spawn_vs_worker_going_idle() {
    loom::model(|| submit_vs_parking(plain(1, 1)));
}

/// Issue 11: the same with a target.
#[test]
fn loom_submit_vs_worker_parking_with_a_target() {
    loom::model(|| submit_vs_parking(managed(1, 1)));
}

fn submit_vs_parking(c: Arc<Core<ModelJob>>) {
    spare(&c, None);
    submit(&c, 7).expect("accepted");
    assert!(c.wait_until(None, None, |st| st.counters.completed == 1));
    finish(&c);
}

/// Spawn racing shutdown always resolves: refused, or taken by the
/// shutdown, or run. Never left in the queue.
#[test]
fn loom_spawn_vs_shutdown() {
    loom::model(|| {
        let c = plain(1, 1);
        spare(&c, None);
        let c3 = c.clone();
        let s = thread::spawn(move || c3.submit(model_job(1)).map_err(|(_, r)| r));
        let taken = finish(&c);
        let submitted = s.join().unwrap();
        let st = c.lock();
        match submitted {
            Err(r) => assert_eq!(r, Refusal::ShutDown),
            Ok(_) => assert_eq!(
                taken as u64 + st.counters.completed,
                1,
                "queued job vanished"
            ),
        }
    });
}

/// Idle reaping racing a new job: the idle timer may fire at any point
/// around a submit; the job still runs (by the reaped worker, or a new
/// one the submitter or the manager creates).
#[test]
fn loom_idle_reap_vs_new_job() {
    reap_vs_new_job(2);
}

/// The same at `max_threads = 1`, where the new thread must wait for the
/// reaped one to be joined (threads count until their exit ended).
#[test]
fn loom_idle_reap_vs_new_job_at_max_threads() {
    reap_vs_new_job(1);
}

fn reap_vs_new_job(max_threads: usize) {
    loom::model(move || {
        let c = plain(0, max_threads);
        spare(&c, None);
        assert!(c.wait_until(None, None, |st| st.idle() == 1));
        {
            // The manager's idle window is running (its timer is the
            // reaper thread below).
            let mut st = c.lock();
            st.idle_deadline = Some(Instant::now() + Duration::from_secs(3600));
        }
        let c3 = c.clone();
        let reaper = thread::spawn(move || {
            let mut st = c3.lock();
            st.idle_low = 1; // parked through a whole window
            drop(c3.reap_idle(st));
        });
        submit(&c, 5).expect("accepted");
        reaper.join().unwrap();
        // The manager's side, played here until the job ran.
        while c.lock().counters.completed == 0 {
            match c.manager_step(Instant::now()) {
                super::ManagerStep::Create(no) => start(&c, no, None),
                _ => thread::yield_now(),
            }
        }
        finish(&c);
    });
}

/// `wait_until` (wait_idle, shutdown) racing the worker that finishes
/// the last job: a waiter that registers late still sees the idle state.
#[test]
fn loom_wait_idle_vs_job_finishing() {
    loom::model(|| {
        let c = plain(0, 1);
        submit(&c, 3).expect("accepted");
        assert!(c.wait_idle(None, None));
        assert_eq!(c.lock().counters.completed, 1);
        finish(&c);
    });
}

/// Issue 11: the block hook racing dispatch. Target 1, two workers,
/// two jobs: job 2 waits for room, which only job 1 blocking makes. If
/// the hook did not hand the room to the parked worker, job 1 would
/// wait for ever (loom reports it).
#[test]
fn loom_block_hook_vs_dispatch() {
    loom::model(|| {
        let c = managed(1, 2);
        spare(&c, Some(1));
        spare(&c, Some(1));
        submit(&c, 1).expect("accepted");
        submit(&c, 2).expect("accepted");
        assert!(c.wait_until(None, None, |st| st.counters.completed == 2));
        finish(&c);
    });
}

/// Issue 11: the monitor's verdict racing the job's end: `running` never
/// underflows and a job compensated after it ended is left alone.
#[test]
fn loom_compensate_vs_job_end() {
    loom::model(|| {
        let c = managed(1, 1);
        let c2 = c.clone();
        let monitor = thread::spawn(move || c2.compensate(0, 1, Verdict::Blocked));
        submit(&c, 1).expect("accepted");
        assert!(c.wait_idle(None, None));
        let compensated = monitor.join().unwrap();
        assert_eq!(
            c.lock().counters.compensated_blocked,
            u64::from(compensated)
        );
        finish(&c);
    });
}

/// The worker loop's hand-over (`report` takes the next job in its
/// critical section): a submit racing a worker that finishes its job.
/// The job is handed over, found by `next`, or the parked worker is
/// woken: never stranded.
#[test]
fn loom_keep_working_hand_over_vs_submit() {
    loom::model(|| {
        let c = two_jobs_one_worker();
        assert!(c.wait_until(None, None, |st| st.counters.completed == 2));
        finish(&c);
    });
}

/// Issue 19: a claim made for a `MayBlock` job is spent only on one.
/// Target 1: a counted job runs, a `MayBlock` job claims the parked
/// worker, and a second counted job is queued; whoever takes what, the
/// counted jobs never run two at once unless one was promised (checked
/// by `take`'s assertion and the invariants at every unlock).
#[test]
fn loom_may_block_claim_is_typed() {
    loom::model(|| {
        let c = managed(1, 2);
        spare(&c, None);
        spare(&c, None);
        submit(&c, 10).expect("accepted");
        let c2 = c.clone();
        let s = thread::spawn(move || c2.submit(model_job(MAY_BLOCK)).map_err(|(_, r)| r));
        submit(&c, 11).expect("accepted");
        s.join().unwrap().expect("accepted");
        assert!(c.wait_until(None, None, |st| st.counters.completed == 3));
        finish(&c);
    });
}

/// Adaptive places (README.md: "Adaptive places"): target 1, a job blocks
/// where the pool cannot see (it waits for the other job to end), and the
/// monitor's estimate raises the places (to the target, 1), racing the
/// workers. The queued job runs in the extra place: the raise serves the
/// queue at once (a lost wake-up leaves it queued, the blocked job waits
/// for ever, and loom reports it); no counted job starts beyond the places
/// (`take`'s assertion), and the places never exceed the target (the
/// invariants, at every unlock).
#[test]
fn loom_adaptive_places_serve_the_queue() {
    loom::model(|| {
        let c = managed(1, 2);
        spare(&c, None);
        spare(&c, None);
        submit(&c, FOREIGN).expect("accepted");
        submit(&c, 2).expect("accepted");
        // The monitor's look, racing the workers' takes and parks.
        c.set_adaptive(5);
        assert!(c.wait_until(None, None, |st| st.counters.completed == 2));
        c.set_adaptive(0);
        finish(&c);
    });
}

/// The re-count (README.md: "The monitor") racing the job's end: the
/// monitor finds the job blocked, then sees it running and counts it
/// again, while it ends. `running` stays exact (the invariants at every
/// unlock; `finish` checks it is back to 0), and only a job that was
/// compensated is counted again.
#[test]
fn loom_recount_vs_job_end() {
    loom::model(|| {
        let c = managed(1, 1);
        let c2 = c.clone();
        let monitor = thread::spawn(move || {
            let found = c2.compensate(0, 1, Verdict::Blocked);
            (found, c2.recount(0, 1))
        });
        submit(&c, 1).expect("accepted");
        assert!(c.wait_idle(None, None));
        let (found, again) = monitor.join().unwrap();
        assert!(found || !again, "counted again without being compensated");
        assert_eq!(c.lock().counters.recounted, u64::from(again));
        finish(&c);
    });
}

/// Submit without the pool lock (README.md: "Submit without the pool
/// lock"): target 1, one worker. Job 1 runs, job 2 waits, so the pool is
/// saturated and the gate lets job 3's submit leave it in the inbox,
/// racing the worker that finishes both jobs and parks (its unlock shuts
/// the gate). The submit's push-fence-read against the unlocker's
/// write-fence-read means one of them takes job 3 under the lock; if
/// neither did, it would wait in the inbox for ever and loom would report
/// the deadlock.
#[test]
fn loom_inbox_submit_vs_worker_parking() {
    loom::model(|| {
        let c = two_jobs_one_worker();
        let c2 = c.clone();
        let s = thread::spawn(move || c2.submit(model_job(3)).map_err(|(_, r)| r));
        // Waiting before the join: this thread's own locks must not be
        // what moves job 3 in.
        assert!(c.wait_until(None, None, |st| st.counters.completed == 3));
        s.join().unwrap().expect("accepted");
        finish(&c);
    });
}

/// The same submit racing a shutdown: a job left in the inbox after the
/// shutdown took the queue is refused (counted cancelled), never lost and
/// never run, and ended by the submit itself or by the shutdown (the two
/// holders that refuse), never left for a worker or a service thread.
#[test]
fn loom_inbox_submit_vs_shutdown() {
    loom::model(|| {
        let c = two_jobs_one_worker();
        let c2 = c.clone();
        let s = thread::spawn(move || c2.submit(model_job(3)).map_err(|(_, r)| r));
        finish(&c);
        let r = s.join().unwrap();
        let st = c.lock();
        // Ended by the submit or the shutdown, whichever saw the other:
        // none waits for a holder that refuses.
        assert!(st.refused.is_empty(), "a refused job was left unended");
        let c = st.counters;
        assert_eq!(
            c.submitted,
            c.completed + c.cancelled,
            "{r:?}: a job was lost"
        );
        if r.is_ok() {
            assert_eq!(c.submitted, 3, "an accepted job was not counted");
        }
    });
}

/// The smallest race of a refused inbox job: the gate is open (a spinner
/// is pretended, so no worker runs), a submit pushes while a shutdown
/// begins and another holder (the monitor's look) takes the lock. The job
/// must end at the submit or at the shutdown, the two holders that
/// refuse: a refused job left in `State::refused` after both returned
/// would wait for ever for its `ShutDown` (its handle's `join` would
/// hang).
#[test]
fn loom_refused_inbox_job_is_ended_by_submit_or_shutdown() {
    loom::model(|| {
        let c = managed(1, 1);
        c.lock().spinning = 1; // the gate opens at this unlock
        let c2 = c.clone();
        let s = thread::spawn(move || c2.submit(model_job(3)).map_err(|(_, r)| r));
        let c3 = c.clone();
        let look = thread::spawn(move || drop(c3.lock()));
        let (taken, _) = c.begin_shutdown();
        let r = s.join().unwrap();
        look.join().unwrap();
        let mut st = c.lock();
        assert!(st.refused.is_empty(), "a refused job was left unended");
        st.spinning = 0;
        let n = st.counters;
        assert_eq!(n.submitted, n.cancelled, "{r:?} {}", taken.len());
        assert_eq!(n.submitted, u64::from(r.is_ok()));
    });
}
