//! A worker between jobs (README.md: "Worker states", "Spinning before
//! parking"): it looks for a job it may take, spins once in a run of jobs,
//! parks on its own condvar, and learns why it woke.

use std::time::Instant;

use super::slot::Ticket;
use super::state::{Class, State};
use super::{Core, QueuedJob, WorkerSide};
use crate::sync::Ordering;

/// Which call to `next` a worker makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// Its first: it stops counting as being created.
    First,
    Again,
}

/// What `next` gives its worker.
pub(super) enum Next<J> {
    /// Run this job; whether it runs as learned `MayBlock`.
    Run(J, bool),
    Exit,
}

/// Polls of a worker that found no job before it parks, the last
/// `YIELD_ROUNDS` of them yielding the CPU (crossbeam's `Backoff`: spin
/// 2^i up to 64, then yield): ~5-20 µs on the development machine.
#[cfg(not(any(loom, shuttle)))]
const SPIN_ROUNDS: u32 = 16;
#[cfg(not(any(loom, shuttle)))]
const YIELD_ROUNDS: u32 = 6;

impl<J: QueuedJob> Core<J> {
    /// A worker's short poll of `queued_hint` before it parks (a few µs:
    /// spin, then yield; none under the models, which explore the unlocked
    /// window itself).
    fn spin(&self) {
        #[cfg(not(any(loom, shuttle)))]
        for i in 0..SPIN_ROUNDS {
            if self.queued_hint.load(Ordering::Relaxed) > 0 || !self.inbox.is_empty() {
                return;
            }
            if i < SPIN_ROUNDS - YIELD_ROUNDS {
                for _ in 0..(1 << i.min(6)) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Takes the next job, parking while there is none this worker may run.
    pub(super) fn next<S: WorkerSide<J>>(&self, me: u64, start: Start, side: &S) -> Next<J> {
        let mut st = self.lock();
        let mut promise = match start {
            Start::First => Self::started_locked(&mut st, me),
            Start::Again => None,
        };
        if let Some(w) = st.workers.get_mut(&me) {
            w.finishing = None; // its last job's user code is done
        }
        let mut spun = false;
        let mut parked = false;
        let mut reaped = false;
        loop {
            if let Some(job) = self.take(&mut st, me, promise, Instant::now()) {
                self.queued_hint.store(st.queued(), Ordering::Relaxed);
                if let Some(w) = st.workers.get_mut(&me) {
                    w.after_park = parked;
                }
                return Next::Run(job, Self::learned_run(&st, me));
            }
            promise = None; // nothing to take: the promise lapses
            if reaped || st.shutdown || (st.closing && st.queued() == 0) {
                return Next::Exit;
            }
            // At most one spinner, only while CPUs are left, and only in a
            // run of jobs (README.md: "Spinning before parking").
            let in_a_run = st.workers.get(&me).is_some_and(|w| !w.after_park);
            if !spun
                && in_a_run
                && !st.closing
                && st.spinning == 0
                && st.running + 1 < self.cfg.target.unwrap_or(usize::MAX)
            {
                spun = true;
                st.spinning += 1;
                drop(st);
                self.spin();
                st = self.lock();
                st.spinning -= 1;
                continue;
            }
            if st.idle() >= self.cfg.max_idle {
                // XPC's idle limit: a thread beyond it exits at once.
                return Next::Exit;
            }
            st.idle_stack.push(me);
            parked = true;
            side.set_idle(true);
            if st.done_waiters > 0 {
                // `build` waits for its spares to park.
                self.done_cv.notify_all();
            }
            if st.idle() == self.cfg.min_idle + 1
                && st.idle_deadline.is_none()
                && !st.manager_notified
            {
                // Spares beyond min_idle now exist: the manager starts its
                // idle timer (rare: only when crossing the threshold).
                st.manager_notified = true;
                self.notify_manager();
            }
            // An untimed wait on the worker's own condvar: a timed one arms
            // a timer on every park and slows the wake-up ("Idle timeout").
            let cv = st.workers[&me].cv.clone();
            loop {
                st = st.wait(&cv);
                match Self::woken(&mut st, me) {
                    Woken::Claimed(c) => promise = Some(c),
                    Woken::Reaped => reaped = true,
                    Woken::Released => {}
                    Woken::Spurious => continue,
                }
                break;
            }
            side.set_idle(false);
        }
    }

    /// Why a parked worker `me` woke: it consumes its ticket.
    fn woken(st: &mut State<J>, me: u64) -> Woken {
        let slot = st.workers.get_mut(&me).expect("a parked worker has a slot");
        match slot.ticket.take() {
            // Claimed (already off the idle stack): it looks again.
            Some(Ticket::Job(c)) => {
                *st.notify.get_mut(c) -= 1;
                Woken::Claimed(c)
            }
            // Reaped (already off the idle stack): it exits, unless a job
            // came in that no promised worker will take (its submitter
            // found no parked worker because the reaper had taken this
            // one): then it runs it.
            Some(Ticket::Reap) => Woken::Reaped,
            None if st.shutdown || st.closing => {
                st.idle_stack.retain(|&w| w != me);
                Woken::Released
            }
            None => Woken::Spurious,
        }
    }
}

/// Why a parked worker left its wait.
enum Woken {
    Claimed(Class),
    Reaped,
    /// The pool shuts down or closes.
    Released,
    Spurious,
}
