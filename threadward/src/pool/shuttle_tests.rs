//! Random-schedule checks (shuttle) of whole-pool scenarios on the dispatch
//! core: more threads and operations than loom can explore exhaustively.
//! Run with `RUSTFLAGS="--cfg shuttle" cargo test -p threadward --lib shuttle`.

use std::collections::BTreeSet;

use shuttle::sync::{Arc, Mutex};
use shuttle::thread;

use super::core::{
    model_job, Config, Core, ModelJob, Outcome, Refusal, Report, Submitted, WorkerSide,
};

type Ran = Arc<Mutex<Vec<u64>>>;

/// The model worker's side: records the jobs it ran, in the report's
/// critical section.
struct Side(Ran);

impl WorkerSide<ModelJob> for Side {
    fn run(&self, job: ModelJob, report: Report<'_>) {
        report(Outcome::Completed, &mut || {
            self.0.lock().unwrap().push(job.0)
        });
    }
    fn set_idle(&self, _: bool) {}
}

/// Starts reserved worker `no` running the shipped worker loop, and hands
/// its handle to the core (which joins it when it leaves).
fn start(core: &Arc<Core<ModelJob>>, no: u64, ran: &Ran) {
    let (c, r) = (core.clone(), ran.clone());
    let h = thread::spawn(move || c.work(no, &Side(r)));
    core.spawned(no, None, Box::new(h));
}

/// Two submitters, a canceller, the manager growing and reaping, and a
/// shutdown. Every accepted job ends exactly once: ran, removed by the
/// canceller, or drained by the shutdown; every thread exits. With
/// `drain_first`, the pool must first run everything on its own (a stranded
/// job shows up as a deadlock in `wait_until`, which shuttle reports);
/// without it, the shutdown races the submitters.
fn scenario(min_idle: usize, max_threads: usize, drain_first: bool, target: Option<usize>) {
    let core = Arc::new(Core::<ModelJob>::new(Config::for_models(
        min_idle,
        max_threads,
        target,
    )));
    let ran: Ran = Arc::new(Mutex::new(Vec::new()));
    let first = core.reserve();
    start(&core, first, &ran);
    let manager = {
        let (c, r) = (core.clone(), ran.clone());
        thread::spawn(move || {
            while let Some(no) = c.manager_next() {
                start(&c, no, &r);
            }
        })
    };
    // Jobs 1-6, shared with the canceller (which cancels as
    // `Job::cancel` does: through the job's mark).
    let jobs: Vec<ModelJob> = (1..=6).map(model_job).collect();
    let submitters: Vec<_> = [1u64, 4]
        .into_iter()
        .map(|base| {
            let (c, r, jobs) = (core.clone(), ran.clone(), jobs.clone());
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for id in base..base + 3 {
                    match c.submit(jobs[id as usize - 1].clone()) {
                        Ok(Submitted::Queued | Submitted::Waiting) => accepted.push(id),
                        // Every worker was reaped: the job is queued with a
                        // worker reserved for it; create it, as Pool::spawn does.
                        Ok(Submitted::CreateWorker(no)) => {
                            accepted.push(id);
                            start(&c, no, &r);
                        }
                        Err((_, Refusal::ShutDown)) => {}
                        Err((_, r)) => panic!("unexpected refusal {r:?}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let canceller = {
        let (c, jobs) = (core.clone(), jobs.clone());
        thread::spawn(move || {
            [2u64, 5]
                .into_iter()
                .filter(|id| c.remove_queued(&jobs[*id as usize - 1].1))
                .collect::<Vec<_>>()
        })
    };
    let accepted: Vec<u64> = submitters
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let removed = canceller.join().unwrap();
    if drain_first {
        core.wait_idle(None, None);
    }
    let (drained, _) = core.begin_shutdown();
    let drained: Vec<u64> = drained.iter().map(|j| j.0).collect();
    if drain_first {
        assert!(drained.is_empty());
    }
    manager.join().unwrap();
    // As `Pool::shutdown`'s finish: every worker leaves, and is joined.
    assert!(core.wait_members(None, None));
    core.settle_exits(None);
    let ran = ran.lock().unwrap().clone();
    // Accepted into the inbox, then refused by the shutdown's side.
    let refused: Vec<u64> = jobs
        .iter()
        .filter(|j| j.1.is_refused())
        .map(|j| j.0)
        .collect();
    if drain_first {
        assert!(refused.is_empty());
    }
    let mut all: Vec<u64> = ran
        .iter()
        .chain(&removed)
        .chain(&drained)
        .chain(&refused)
        .copied()
        .collect();
    all.sort_unstable();
    let mut want = accepted.clone();
    want.sort_unstable();
    assert_eq!(
        all, want,
        "ran {ran:?} removed {removed:?} drained {drained:?} refused {refused:?}"
    );
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a job ended twice");
    let st = core.lock();
    assert_eq!(st.threads, 0);
    assert!(st.queue.is_empty());
    assert_eq!(st.busy, 0);
    let c = st.counters;
    assert_eq!(c.submitted, accepted.len() as u64);
    assert_eq!(c.completed + c.cancelled, c.submitted);
}

#[test]
fn shuttle_random_whole_pool_runs_everything() {
    shuttle::check_random(|| scenario(1, 3, true, None), 3000);
}

#[test]
fn shuttle_random_whole_pool_racing_shutdown() {
    shuttle::check_random(|| scenario(1, 3, false, None), 3000);
}

#[test]
fn shuttle_random_zero_spares_single_thread() {
    shuttle::check_random(|| scenario(0, 1, true, None), 3000);
    shuttle::check_random(|| scenario(0, 1, false, None), 3000);
}

#[test]
fn shuttle_pct_whole_pool() {
    shuttle::check_pct(|| scenario(1, 2, true, None), 3000, 3);
    shuttle::check_pct(|| scenario(1, 2, false, None), 3000, 3);
}

/// Issue 11: the same whole-pool scenarios with a concurrency target of 1:
/// jobs wait for room instead of threads, and every one still ends once.
#[test]
fn shuttle_random_whole_pool_with_a_target() {
    shuttle::check_random(|| scenario(1, 3, true, Some(1)), 3000);
    shuttle::check_random(|| scenario(0, 2, false, Some(1)), 3000);
    shuttle::check_pct(|| scenario(1, 2, true, Some(1)), 3000, 3);
}
