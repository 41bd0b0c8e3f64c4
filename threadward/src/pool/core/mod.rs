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
use crate::sync::{self, AtomicBool, AtomicUsize, Condvar, Inbox, Mutex, MutexGuard, Ordering};

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

/// The pool lock, held: derefs to the state, and checks the invariants
/// when it is released (debug builds, loom, shuttle).
pub(crate) struct Locked<'a, J: QueuedJob> {
    core: &'a Core<J>,
    g: Option<MutexGuard<'a, State<J>>>,
    /// Wake-ups owed for jobs taken from the inbox, issued after the
    /// unlock.
    owed: Wakes,
    /// This holder ends the inbox jobs that met a shut-down or closing
    /// pool (`State::refused`): a submit that found the gate shut after
    /// its push, or the shutdown or close itself. Other holders (a worker,
    /// the monitor, the manager) leave them: their closures' drops are
    /// user code, which runs on the threads that raced.
    refuses: bool,
    /// The refused jobs this holder took: ended after the unlock.
    to_end: Vec<J>,
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
        if self.g.is_none() {
            return;
        }
        // Also while unwinding (a job guard's cancel): only the checks are
        // skipped, so no owed wake-up or refusal is lost.
        self.publish();
        self.collect_refused();
        let g = self.g.take().expect("held");
        if cfg!(any(debug_assertions, loom, shuttle)) && !std::thread::panicking() {
            self.core.check(&g);
        }
        let done = !self.to_end.is_empty() && g.done_waiters > 0;
        drop(g);
        self.core.issue(std::mem::take(&mut self.owed), done);
        for job in self.to_end.drain(..) {
            job.refuse();
        }
    }
}

impl<'a, J: QueuedJob> Locked<'a, J> {
    /// Moves the inbox's jobs into the state (README.md: "Submit without
    /// the pool lock"): each is counted submitted and queued in its class,
    /// or, if the pool shuts down or closes, counted cancelled and refused
    /// after the unlock; then whoever can run them is claimed.
    pub(crate) fn take_inbox(&mut self) {
        if !self.core.inbox.is_empty() {
            self.take_inbox_then(|_| ());
        }
    }

    /// [`take_inbox`](Self::take_inbox), locking the inbox even if it
    /// looks empty, and runs `then` on the state before the inbox's lock
    /// is released: no submit marks a job meanwhile. A cancel's kill runs
    /// there (README.md: "Cancelling a queued job"): a job marked waiting
    /// is then surely in a queue, not in the inbox.
    pub(crate) fn take_inbox_then<R>(&mut self, then: impl FnOnce(&mut State<J>) -> R) -> R {
        let core = self.core;
        let st = self.g.as_mut().expect("held");
        let mut batch = std::mem::take(&mut st.inbox_buf);
        let (queued, r) = core.inbox.take_all_then(&mut batch, |batch| {
            let queued = core.place(st, batch);
            (queued, then(st))
        });
        st.inbox_buf = batch;
        if queued {
            st.refusing = false;
            core.dispatch(st, &mut self.owed);
        }
        r
    }

    /// A holder that refuses takes the refused inbox jobs, to end them
    /// after the unlock.
    fn collect_refused(&mut self) {
        if self.refuses {
            let st = self.g.as_mut().expect("held");
            self.to_end.append(&mut st.refused);
        }
    }

    /// Publishes, before an unlock, whether a submit may skip the lock.
    /// When it may not, a submit that read the old "may" and pushed is
    /// caught here or catches this: each side writes, fences (`SeqCst`),
    /// then reads the other's write (the submit: its push, then `fast`;
    /// here: `fast`, then the inbox), so at least one of them sees the
    /// other and the job is taken under a lock (README.md: "Submit
    /// without the pool lock").
    fn publish(&mut self) {
        if !self.core.gated {
            return; // the gate never opens: nothing reaches the inbox
        }
        loop {
            let fast = self.core.fast_ok(self);
            if self.core.fast.load(Ordering::Relaxed) != fast {
                self.core.fast.store(fast, Ordering::SeqCst);
            }
            if fast {
                return;
            }
            sync::fence(Ordering::SeqCst);
            if self.core.inbox.is_empty() {
                return;
            }
            self.take_inbox();
        }
    }

    /// Before a wait: publishes, and if wake-ups or refusals are owed,
    /// issues them with the lock released and takes it back instead of
    /// waiting (the caller treats that as a spurious wake-up).
    fn before_wait(self) -> Result<Self, Self> {
        let mut me = self;
        me.publish();
        me.collect_refused();
        if me.owed.is_empty() && me.to_end.is_empty() {
            return Ok(me);
        }
        let core = me.core;
        drop(me);
        Err(core.lock())
    }

    /// Releases the lock for `wait` (an unlock: it publishes and checks
    /// the invariants first) and moves the inbox in once `wait` has the
    /// lock back. `Err`: wake-ups or refusals were owed, so they were
    /// issued with the lock released and the lock taken back instead of
    /// waiting (the caller treats that as a spurious wake-up).
    fn released<R>(
        self,
        wait: impl FnOnce(MutexGuard<'a, State<J>>) -> (MutexGuard<'a, State<J>>, R),
    ) -> Result<(Self, R), Self> {
        let mut me = self.before_wait()?;
        let g = me.g.take().expect("held");
        me.core.check(&g);
        let (g, r) = wait(g);
        me.g = Some(g);
        me.take_inbox();
        Ok((me, r))
    }

    /// Waits on `cv` (an unlock: the invariants are checked first). May
    /// return without a notification (a spurious wake-up).
    pub(crate) fn wait(self, cv: &Condvar) -> Self {
        match self.released(|g| (sync::wait(cv, g), ())) {
            Ok((me, ())) => me,
            Err(relocked) => relocked,
        }
    }

    /// Waits on `cv` for at most `dur` (an unlock: the invariants are
    /// checked first); whether it timed out.
    #[cfg(all(test, shuttle))]
    pub(crate) fn wait_timeout(self, cv: &Condvar, dur: std::time::Duration) -> (Self, bool) {
        let st = &self.core.st;
        match self.released(|g| sync::wait_timeout(st, cv, g, dur)) {
            Ok(waited) => waited,
            Err(relocked) => (relocked, false),
        }
    }

    /// Waits on `done_cv` until `done` holds or `deadline` passes. (Jobs
    /// submitted through the inbox meanwhile are taken by the next
    /// `lock`: this waiter changes nothing, so the gate it published
    /// stands.)
    fn wait_done(
        self,
        deadline: Option<std::time::Instant>,
        mut done: impl FnMut(&State<J>) -> bool,
    ) -> (Self, bool) {
        let core = self.core;
        let mut me = self;
        loop {
            let waited = me.released(|g| {
                sync::wait_until(&core.st, &core.done_cv, g, deadline, |st| {
                    core.check(st);
                    done(st)
                })
            });
            match waited {
                Ok(waited) => return waited,
                Err(relocked) => me = relocked,
            }
        }
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
