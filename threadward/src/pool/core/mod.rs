//! The pool's state machine (README.md in the parent directory): a
//! private [`State`] behind one mutex, changed only by the named
//! transitions of this module's files, each returning what must happen once
//! the lock is released (whom to wake, a thread to create or join), and a
//! `check_invariants()` run at every unlock in debug, loom and shuttle
//! builds.
//!
//! * `state.rs`: the state and its types; `slot.rs`: what it keeps per
//!   worker; `invariants.rs`: its identities, checked at every unlock;
//! * `locked.rs`: the held pool lock, whose release checks them;
//! * `dispatch.rs`: submit, withdraw, cancel, who is woken;
//! * `turn.rs`: a worker's turn (take, report, block) and the worker loop
//!   the shipped workers and the models both run; `park.rs`: a worker
//!   between jobs (spin, park, why it woke);
//! * `lifecycle.rs`: reserve, spawned, exit, shutdown, close, waits;
//! * `manager.rs`, `monitor.rs`: the two service threads' sides;
//! * `loom.rs`: the models.

use std::sync::Arc;

use crate::stop::HasStop;
use crate::sync::{self, AtomicBool, AtomicUsize, Condvar, Inbox, Mutex};

mod adapt;
mod dispatch;
mod invariants;
mod learn;
mod lifecycle;
mod locked;
mod manager;
mod monitor;
mod park;
mod queue;
mod slot;
mod state;
mod turn;

#[cfg(all(test, loom))]
mod loom;

pub(crate) use self::adapt::Adapt;
pub(crate) use self::dispatch::{Refusal, Submitted};
pub(crate) use self::locked::Locked;
pub(crate) use self::manager::{ManagerStep, Overdue, StallEvent};
pub(crate) use self::monitor::Verdict;
pub(crate) use self::queue::QueueMark;
pub(crate) use self::slot::{Joinable, WorkerNoHasher as KindHasher};
pub(crate) use self::state::{Config, State};
pub use self::state::{JobHint, Queue};
pub(crate) use self::turn::{Block, Outcome, Report, WorkerSide};

/// What the protocol needs to know of a queued job.
pub(crate) trait QueuedJob: Send {
    fn id(&self) -> u64;
    /// The job's stop state (made on first use), reachable without keeping
    /// the job alive; `None` for the models' jobs, which have none.
    fn stopper(&self) -> Option<std::sync::Weak<dyn HasStop>>;
    /// Where the job is with respect to the queue (kept by the queue).
    fn mark(&self) -> &QueueMark;
    /// How the job expects to behave (a hint given at spawn).
    fn hint(&self) -> JobHint {
        JobHint::Auto
    }
    /// The job's kind, for learned hints (its closure's type); `None`:
    /// never learned (the models' jobs).
    fn kind(&self) -> Option<u64> {
        None
    }
    /// The kind's name for the snapshot (a closure's type name).
    fn kind_name(&self) -> &'static str {
        "?"
    }
    /// The job will never run: its submit raced a shutdown or a close
    /// through the inbox (README.md: "Submit without the pool lock"). It
    /// ends `ShutDown`; called with the pool lock released (a job's
    /// closure is user code).
    fn refuse(self)
    where
        Self: Sized,
    {
    }
}

/// The models' job: a number (`MAY_BLOCK` and above: a `MayBlock` job)
/// and the mark the queue keeps, shared like a pool job's cell so a model
/// can cancel it as `Job::cancel` does.
#[cfg(all(test, any(loom, shuttle)))]
pub(crate) type ModelJob = std::sync::Arc<(u64, QueueMark)>;

/// A model job numbered `n`.
#[cfg(all(test, any(loom, shuttle)))]
pub(crate) fn model_job(n: u64) -> ModelJob {
    std::sync::Arc::new((n, QueueMark::default()))
}

/// Model job numbers at or above this are `MayBlock`.
#[cfg(all(test, any(loom, shuttle)))]
pub(crate) const MAY_BLOCK: u64 = 1 << 40;

#[cfg(all(test, any(loom, shuttle)))]
impl QueuedJob for ModelJob {
    fn id(&self) -> u64 {
        self.0
    }
    fn stopper(&self) -> Option<std::sync::Weak<dyn HasStop>> {
        None
    }
    fn mark(&self) -> &QueueMark {
        &self.1
    }
    fn hint(&self) -> JobHint {
        if self.0 >= MAY_BLOCK {
            JobHint::MayBlock
        } else {
            JobHint::Auto
        }
    }
}

/// How a pool wakes the process-wide manager.
pub(crate) type Notifier = Box<dyn Fn() + Send + Sync>;

pub(crate) struct Core<J: QueuedJob> {
    st: Mutex<State<J>>,
    /// Wakes the manager; `None`: the models' per-core manager condvar.
    notifier: Option<Notifier>,
    /// Set when a change left the pool saturated (work waits for room):
    /// whoever made the change wakes the monitor after unlocking.
    saturation: AtomicBool,
    /// Jobs queued, as last written under the lock: what spinning workers
    /// poll without the lock.
    queued_hint: AtomicUsize,
    /// Counted jobs submitted without the lock, not yet in `State::queue`
    /// (README.md: "Submit without the pool lock"): every acquisition of
    /// the lock moves them into the state first.
    inbox: Inbox<J>,
    /// Whether a submit may leave its job in `inbox` without the lock:
    /// published at every unlock (`Locked::publish`); true only while
    /// somebody is sure to take the lock soon (the pool is saturated, or
    /// a worker spins).
    fast: AtomicBool,
    /// Whether the gate can ever open (a target and an unbounded queue):
    /// if not, unlocks publish nothing.
    gated: bool,
    manager_cv: Condvar,
    done_cv: Condvar,
    pub(crate) cfg: Config,
}

/// Wake-ups decided under the lock, issued after it is released.
#[derive(Default)]
#[must_use]
pub(crate) struct Wakes {
    pub(crate) workers: Vec<Arc<Condvar>>,
    pub(crate) manager: bool,
    /// `wait_until` callers, if any wait: set by the transitions that can
    /// make what they wait for true (a job ends, a worker leaves, a queued
    /// job goes, a handle arrives), not by every unlock (a job leaving a
    /// wait would otherwise wake a shutdown's wait a thousand times).
    pub(crate) done: bool,
}

impl Wakes {
    fn is_empty(&self) -> bool {
        self.workers.is_empty() && !self.manager && !self.done
    }

    /// Only the `wait_until` callers.
    pub(crate) fn done() -> Wakes {
        Wakes {
            done: true,
            ..Wakes::default()
        }
    }
}

impl<J: QueuedJob> Core<J> {
    /// A core whose manager is woken through `notifier` (`None`: the
    /// models' blocking manager loop on the core's own condvar).
    pub(crate) fn with_notifier(cfg: Config, notifier: Option<Notifier>) -> Core<J> {
        Core {
            notifier,
            st: Mutex::new(State::new()),
            saturation: AtomicBool::new(false),
            queued_hint: AtomicUsize::new(0),
            inbox: Inbox::new(),
            fast: AtomicBool::new(false),
            gated: cfg.target.is_some() && cfg.wait_bound().is_none(),
            manager_cv: Condvar::new(),
            done_cv: Condvar::new(),
            cfg,
        }
    }

    /// A core for the models.
    #[cfg(all(test, any(loom, shuttle)))]
    pub(crate) fn new(cfg: Config) -> Core<J> {
        Core::with_notifier(cfg, None)
    }

    /// Takes the pool lock; the inbox's jobs are moved into the state
    /// first, so every critical section sees every accepted job.
    pub(crate) fn lock(&self) -> Locked<'_, J> {
        self.lock_as(false)
    }

    /// [`lock`](Self::lock) for a holder that ends the refused inbox jobs
    /// after its unlock (see `Locked::refuses`).
    pub(crate) fn lock_refusing(&self) -> Locked<'_, J> {
        self.lock_as(true)
    }

    fn lock_as(&self, refuses: bool) -> Locked<'_, J> {
        let mut l = Locked {
            core: self,
            g: Some(sync::lock(&self.st)),
            owed: Wakes::default(),
            refuses,
            to_end: Vec::new(),
        };
        l.take_inbox();
        l
    }

    /// Places the jobs of `batch` (taken from the inbox) in the state, as
    /// [`Locked::take_inbox`] says; whether any was queued.
    fn place(&self, st: &mut State<J>, batch: &mut Vec<J>) -> bool {
        let mut queued = false;
        for job in batch.drain(..) {
            st.counters.submitted += 1;
            if st.shutdown || st.closing {
                st.counters.cancelled += 1;
                job.mark().refuse();
                st.refused.push(job);
                continue;
            }
            queued = true;
            // Only counted jobs come through the inbox (marked so by their
            // submitters); one of a kind learned meanwhile goes to
            // `urgent` (README.md: "Learned hints").
            if self.cfg.learn && st.learned.learned > 0 {
                if let state::Class::Urgent = self.class_of(st, &job) {
                    st.urgent.push(job);
                    continue;
                }
            }
            st.queue.push_marked(job);
        }
        queued
    }

    fn check(&self, st: &State<J>) {
        if cfg!(any(debug_assertions, loom, shuttle)) {
            st.check_invariants(&self.cfg);
            #[cfg(any(loom, shuttle))]
            st.check_slots();
        }
    }

    /// Releases the lock, then issues the wake-ups.
    pub(crate) fn wake(&self, st: Locked<'_, J>, wakes: Wakes) {
        let done = wakes.done && st.done_waiters > 0;
        drop(st);
        self.issue(wakes, done);
    }

    /// Issues `wakes` (the lock released); `done`: the `wait_until`
    /// callers too.
    fn issue(&self, wakes: Wakes, done: bool) {
        for cv in wakes.workers {
            cv.notify_one();
        }
        if wakes.manager {
            self.notify_manager();
        }
        if done {
            self.done_cv.notify_all();
        }
    }

    /// Tells the manager there is work: the process-wide manager through
    /// the notifier the pool installed, or (models) this core's condvar.
    fn notify_manager(&self) {
        match &self.notifier {
            Some(n) => n(),
            None => self.manager_cv.notify_all(),
        }
    }
}
