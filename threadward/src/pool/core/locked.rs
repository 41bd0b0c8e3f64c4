//! The pool lock, held (`Locked`): it derefs to the state, moves the
//! inbox's jobs in, and runs `State::check_invariants()` whenever it is
//! released — its drop and every condvar wait (README.md: "Locks",
//! "Invariants").

use std::ops::{Deref, DerefMut};

use super::state::State;
use super::{Core, QueuedJob, Wakes};
use crate::sync::{self, Condvar, MutexGuard, Ordering};

/// The pool lock, held: derefs to the state, and checks the invariants
/// when it is released (debug builds, loom, shuttle).
pub(crate) struct Locked<'a, J: QueuedJob> {
    pub(super) core: &'a Core<J>,
    pub(super) g: Option<MutexGuard<'a, State<J>>>,
    /// Wake-ups owed for jobs taken from the inbox, issued after the
    /// unlock.
    pub(super) owed: Wakes,
    /// This holder ends the inbox jobs that met a shut-down or closing
    /// pool (`State::refused`): a submit that found the gate shut after
    /// its push, or the shutdown or close itself. Other holders (a worker,
    /// the monitor, the manager) leave them: their closures' drops are
    /// user code, which runs on the threads that raced.
    pub(super) refuses: bool,
    /// The refused jobs this holder took: ended after the unlock.
    pub(super) to_end: Vec<J>,
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
    pub(super) fn wait_done(
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
