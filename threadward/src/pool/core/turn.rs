//! A worker's turn (README.md: "Worker states", "A job's end",
//! "Concurrency management"): take a job, report it, spin, park, block;
//! and [`Core::work`], the loop every worker runs — the shipped ones and
//! the models' alike.

use std::cell::Cell;
use std::time::Instant;

use super::learn::{KindKey, Probed, RunProbe, PROBE_EVERY};
use super::lifecycle::Leaving;
use super::park::{Next, Start};
use super::slot::Current;
use super::state::{Class, JobHint, State};
use super::{Core, QueuedJob, Wakes};

/// How a worker's job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    /// Cancelled after it was taken from the queue, before it started.
    Skipped,
}

/// A job enters or leaves a wait that really blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// cmwq's `wq_worker_sleeping`: the job stops counting.
    Enter,
    /// cmwq's `wq_worker_running`: it counts again.
    Leave,
}

/// What a job tells its worker when it ends: the outcome to count, and a
/// step (storing the result) to run in the same critical section as the
/// count.
pub(crate) type Report<'a> = &'a dyn Fn(Outcome, &mut dyn FnMut());

/// What a worker does besides the protocol: the shipped worker runs
/// `Task`s and tells the registry; the models run numbers.
pub(crate) trait WorkerSide<J> {
    /// Runs `job` and calls `report` exactly once; never unwinds.
    fn run(&self, job: J, report: Report<'_>);
    /// The worker parks (`true`) or unparks.
    fn set_idle(&self, idle: bool);
    /// After the worker took a job (the shipped worker pokes the monitor
    /// if that left the pool saturated).
    fn took(&self) {}
    /// Before the exit bookkeeping (the shipped worker leaves the registry).
    fn leaving(&self) {}
}

/// Runs the worker's exit bookkeeping, also when the worker unwinds.
struct ExitGuard<'a, J: QueuedJob, S: WorkerSide<J>> {
    core: &'a Core<J>,
    side: &'a S,
    me: u64,
    leaving: Cell<Leaving>,
}

impl<J: QueuedJob, S: WorkerSide<J>> Drop for ExitGuard<'_, J, S> {
    fn drop(&mut self) {
        self.side.leaving();
        self.core.exit(self.me, self.leaving.get());
    }
}

impl<J: QueuedJob> Core<J> {
    /// The worker loop of worker `me` (reserved): take a job, run it,
    /// report it and take the next in the same critical section (cmwq's
    /// `keep_working`: one lock per job on a busy pool, no wake-up), park
    /// when there is none, until the pool says exit.
    pub(crate) fn work<S: WorkerSide<J>>(&self, me: u64, side: &S) {
        let guard = ExitGuard {
            core: self,
            side,
            me,
            leaving: Cell::new(Leaving::Starting),
        };
        // The next job, handed over by `report` in the critical section
        // that counted the last one.
        let handed: Cell<Option<J>> = Cell::new(None);
        // A learned run's sleep, measured by this worker (README.md:
        // "Learned hints").
        // `Some(None)`: probed, but the probe could not read.
        let probe: Cell<Option<Option<RunProbe>>> = Cell::new(None);
        let learned_run = Cell::new(false);
        let mut learned_runs = 0u32;
        let report = |outcome: Outcome, settle: &mut dyn FnMut()| {
            let probed = match probe.take() {
                None => Probed::Skipped,
                Some(None) => Probed::Unknown,
                Some(Some(p)) => p.end(),
            };
            let (next, learned) = self.report(me, outcome, settle, probed);
            learned_run.set(learned);
            guard.leaving.set(if next.is_some() {
                Leaving::Busy
            } else {
                Leaving::Idle
            });
            handed.set(next);
        };
        let mut start = Start::First;
        loop {
            let job = match handed.take() {
                Some(job) => job,
                None => {
                    let next = self.next(me, start, side);
                    start = Start::Again;
                    guard.leaving.set(Leaving::Idle);
                    match next {
                        Next::Run(job, learned) => {
                            guard.leaving.set(Leaving::Busy);
                            learned_run.set(learned);
                            job
                        }
                        Next::Exit => break,
                    }
                }
            };
            side.took();
            if learned_run.get() {
                learned_runs = learned_runs.wrapping_add(1);
                if learned_runs % PROBE_EVERY == 1 {
                    probe.set(Some(RunProbe::start()));
                }
            }
            side.run(job, &report);
        }
    }

    /// Takes the next job worker `me` may run now. A worker holding a
    /// promise of class `c` (woken for such a job, created for one, or
    /// keeping its place in `running`) takes a job of that class whatever
    /// the target says; otherwise, or if there is none: `MayBlock` jobs
    /// first, then a counted one only in room nobody was promised.
    ///
    /// `now` is the job's start time, read by the caller: before it took
    /// the lock on a busy pool's path (`report`), so the clock is not read
    /// under the lock.
    pub(super) fn take(
        &self,
        st: &mut State<J>,
        me: u64,
        promise: Option<Class>,
        now: Instant,
    ) -> Option<J> {
        let promised = match promise {
            Some(Class::Urgent) => st.urgent.pop().map(|j| (j, Class::Urgent)),
            Some(Class::Counted) => st.queue.pop().map(|j| (j, Class::Counted)),
            None => None,
        };
        let (job, from) = match promised {
            Some(taken) => taken,
            None => {
                if let Some(job) = st.urgent.pop() {
                    (job, Class::Urgent)
                } else if !st.queue.is_empty() && self.room(st) > st.promised(Class::Counted) {
                    (st.queue.pop()?, Class::Counted)
                } else {
                    return None;
                }
            }
        };
        // An unhinted job taken from `urgent` was learned to block: it
        // runs as `MayBlock` (README.md: "Learned hints").
        let learned = from == Class::Urgent && job.hint() != JobHint::MayBlock;
        let hint = if learned {
            JobHint::MayBlock
        } else {
            job.hint()
        };
        if learned {
            st.learned.runs += 1;
        }
        if st.queue.is_empty() {
            st.extra = 0; // the backstop's allowance ends with the backlog
        }
        st.busy += 1;
        st.counters.taken += 1;
        if hint != JobHint::MayBlock {
            // No counted job starts beyond the target unless a worker was
            // promised to it (README.md: "Invariants", I3).
            if cfg!(any(debug_assertions, loom, shuttle)) {
                assert!(
                    promise == Some(Class::Counted) || st.running < self.places(st),
                    "I3 a counted job started beyond the target without a promise"
                );
            }
            // A counted job starts: only here does the liveness backstop
            // see progress (a MayBlock job frees no room for the queue).
            st.last_start = now;
            st.running += 1;
        }
        let slot = st.workers.get_mut(&me).expect("a worker has a slot");
        slot.current = Some(Current {
            job: job.id(),
            stop: job.stopper(),
            started: now,
            hint,
            blocked: 0,
            compensated: false,
            overdue: false,
            // Only a learning pool needs the kind (a hash per job).
            kind: if self.cfg.learn {
                job.kind().map(|id| KindKey {
                    id,
                    name: job.kind_name(),
                })
            } else {
                None
            },
            learned,
            blocked_seen: false,
            hog: false,
        });
        self.note_saturation(st);
        Some(job)
    }

    /// Counts how worker `me`'s job ended, running `settle` (which stores
    /// the job's result) in the same critical section, and hands the
    /// worker its next job if it may take one. The finished job's place in
    /// `running` passes to that job without a gap; if there is none, the
    /// place goes to whoever may use it.
    fn report(
        &self,
        me: u64,
        outcome: Outcome,
        settle: &mut dyn FnMut(),
        probed: Probed,
    ) -> (Option<J>, bool) {
        let now = Instant::now();
        let mut st = self.lock();
        settle();
        let promoted = self.learn(&mut st, me, now, probed);
        st.busy -= 1;
        match outcome {
            Outcome::Completed => st.counters.completed += 1,
            Outcome::Panicked => st.counters.panicked += 1,
            Outcome::Skipped => st.counters.cancelled += 1,
        }
        let held = Self::release_current(&mut st, me);
        let next = self.take(&mut st, me, held.then_some(Class::Counted), now);
        if let Some(w) = st.workers.get_mut(&me) {
            w.after_park &= next.is_none(); // a handed job is a run of jobs
        }
        let learned = next.is_some() && Self::learned_run(&st, me);
        if (next.is_none() && held) || promoted {
            self.serve_and_unlock(st);
        } else {
            self.wake(st, Wakes::done());
        }
        (next, learned)
    }

    /// Whether worker `me`'s current job runs as learned `MayBlock`.
    pub(super) fn learned_run(st: &State<J>, me: u64) -> bool {
        st.workers
            .get(&me)
            .and_then(|w| w.current.as_ref())
            .is_some_and(|c| c.learned)
    }

    /// Records how worker `me`'s job ended for its kind (README.md:
    /// "Learned hints"): an unlearned kind's run blocked if the monitor
    /// found it blocked; a learned kind's run (unwatched) if it lasted
    /// `BLOCKED_RUN`. A kind learned now has its queued jobs promoted to
    /// `urgent`; whether any were (then the caller serves them).
    fn learn(&self, st: &mut State<J>, me: u64, now: Instant, probed: Probed) -> bool {
        if !self.cfg.learn || st.learned.is_empty() {
            return false; // no kind ever blocked: nothing to record
        }
        let Some(c) = st.workers.get(&me).and_then(|w| w.current.as_ref()) else {
            return false;
        };
        let Some(kind) = c.kind else {
            return false;
        };
        let blocked = if c.learned {
            match probed {
                Probed::Blocked(b) => b,
                Probed::Unknown => {
                    now.saturating_duration_since(c.started) >= super::learn::BLOCKED_RUN
                }
                Probed::Skipped => return false, // teaches nothing
            }
        } else if c.watched() && !c.blocked_seen {
            false // watched and never found blocked: a quick run
        } else {
            // Found blocked (recorded then, by `compensate`), or hinted
            // (a hinted job teaches nothing).
            return false;
        };
        self.record_run(st, kind, blocked)
    }

    /// Records a run of `kind`; a kind learned now has its queued jobs
    /// promoted to `urgent` (whether any were: the caller serves them).
    pub(crate) fn record_run(&self, st: &mut State<J>, kind: KindKey, blocked: bool) -> bool {
        if st.learned.record(kind, blocked) != super::learn::Change::Learned {
            return false;
        }
        let promoted = st
            .queue
            .extract(|j| j.kind() == Some(kind.id) && j.hint() == JobHint::Auto);
        let any = !promoted.is_empty();
        for j in promoted {
            st.urgent.push(j);
        }
        any
    }

    /// Worker `me`'s job enters or leaves a wait that really blocks (cmwq's
    /// `wq_worker_sleeping` / `wq_worker_running`). Entering makes room
    /// under the target: a queued job gets a parked worker or a new thread
    /// at once.
    pub(crate) fn block(&self, me: u64, b: Block) {
        let mut st = self.lock();
        Self::update_current(&mut st, me, |c| match b {
            Block::Enter => c.blocked += 1,
            Block::Leave => c.blocked = c.blocked.saturating_sub(1),
        });
        let mut wakes = Wakes::default();
        match b {
            Block::Enter => self.dispatch(&mut st, &mut wakes),
            Block::Leave => self.note_saturation(&st),
        }
        self.wake(st, wakes);
    }
}
