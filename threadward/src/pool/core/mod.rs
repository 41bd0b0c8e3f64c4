//! The pool's state machine (README.md in the parent directory): a
//! private [`State`] behind one mutex, changed only by the named
//! transitions of this module's files, each returning what must happen once
//! the lock is released (whom to wake, a thread to create or join), and a
//! `check_invariants()` run at every unlock in debug, loom and shuttle
//! builds.
//!
//! * `state.rs`: the state, its types and its identities;
//! * `dispatch.rs`: submit, withdraw, cancel, who is woken;
//! * `turn.rs`: a worker's turn (take, report, spin, park, block) and the
//!   worker loop the shipped workers and the models both run;
//! * `lifecycle.rs`: reserve, spawned, exit, shutdown, close, waits;
//! * `manager.rs`, `monitor.rs`: the two service threads' sides;
//! * `loom.rs`: the models.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::stop::HasStop;
use crate::sync::{self, AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard};

mod adapt;
mod dispatch;
mod learn;
mod lifecycle;
mod manager;
mod monitor;
mod queue;
mod state;
mod turn;

#[cfg(all(test, loom))]
mod loom;

pub(crate) use self::adapt::Adapt;
pub(crate) use self::dispatch::{Refusal, Submitted};
pub(crate) use self::manager::{ManagerStep, Overdue, StallEvent};
pub(crate) use self::monitor::Verdict;
pub(crate) use self::queue::QueueMark;
pub(crate) use self::state::{Config, Joinable, State, WorkerNoHasher as KindHasher};
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
    manager_cv: Condvar,
    done_cv: Condvar,
    pub(crate) cfg: Config,
}

/// The pool lock, held: derefs to the state, and checks the invariants
/// when it is released (debug builds, loom, shuttle).
pub(crate) struct Locked<'a, J: QueuedJob> {
    core: &'a Core<J>,
    g: Option<MutexGuard<'a, State<J>>>,
}

impl<J: QueuedJob> Deref for Locked<'_, J> {
    type Target = State<J>;
    fn deref(&self) -> &State<J> {
        self.g.as_ref().expect("held")
    }
}

impl<J: QueuedJob> DerefMut for Locked<'_, J> {
    fn deref_mut(&mut self) -> &mut State<J> {
        self.g.as_mut().expect("held")
    }
}

impl<J: QueuedJob> Drop for Locked<'_, J> {
    fn drop(&mut self) {
        if let Some(g) = &self.g {
            if cfg!(any(debug_assertions, loom, shuttle)) && !std::thread::panicking() {
                self.core.check(g);
            }
        }
    }
}

impl<'a, J: QueuedJob> Locked<'a, J> {
    /// Waits on `cv` (an unlock: the invariants are checked first).
    pub(crate) fn wait(mut self, cv: &Condvar) -> Self {
        let g = self.g.take().expect("held");
        self.core.check(&g);
        self.g = Some(sync::wait(cv, g));
        self
    }

    /// Waits on `cv` for at most `dur` (an unlock: the invariants are
    /// checked first); whether it timed out.
    #[cfg(all(test, shuttle))]
    pub(crate) fn wait_timeout(mut self, cv: &Condvar, dur: std::time::Duration) -> (Self, bool) {
        let g = self.g.take().expect("held");
        self.core.check(&g);
        let (g, timed_out) = sync::wait_timeout(&self.core.st, cv, g, dur);
        self.g = Some(g);
        (self, timed_out)
    }

    /// Waits on `done_cv` until `done` holds or `deadline` passes.
    fn wait_done(
        mut self,
        deadline: Option<std::time::Instant>,
        mut done: impl FnMut(&State<J>) -> bool,
    ) -> (Self, bool) {
        let core = self.core;
        let g = self.g.take().expect("held");
        core.check(&g);
        let (g, ok) = sync::wait_until(&core.st, &core.done_cv, g, deadline, |st| {
            core.check(st);
            done(st)
        });
        self.g = Some(g);
        (self, ok)
    }
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

    pub(crate) fn lock(&self) -> Locked<'_, J> {
        Locked {
            core: self,
            g: Some(sync::lock(&self.st)),
        }
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
