//! A worker's turn without the pool lock (README.md: "Take without the
//! pool lock"): a worker whose job held a counted place passes the place
//! to the inbox's oldest job under the inbox's lock alone, and logs what
//! it did; the next holder of the pool lock applies the log to the state
//! before anything else, so every critical section sees every turn.

use std::time::Instant;

use super::learn::Probed;
use super::state::{Current, State};
use super::turn::Outcome;
use super::{Core, QueuedJob};
use crate::sync::{AtomicBool, Ordering, Refill};

/// Turns the log holds at most: a worker that finds it full takes the
/// pool lock (which applies them), so the state lags by at most this many
/// jobs between two critical sections and the log never grows.
#[cfg(not(any(loom, shuttle)))]
const MAX_TURNS: usize = 64;
#[cfg(any(loom, shuttle))]
const MAX_TURNS: usize = 2;

/// One worker's turn, as logged: its job ended with `outcome`, and it
/// started the inbox's oldest job, described by `next`.
pub(crate) struct Turn {
    me: u64,
    outcome: Outcome,
    /// The job taken was counted in place already (submitted, queued).
    counted: bool,
    next: Current,
}

impl<J: QueuedJob> Core<J> {
    /// Whether workers may take turns without the lock: a pool whose
    /// inbox can open, accepting, with no older job in the state's queues
    /// (they go first), and nothing learned to block (the inbox's jobs are
    /// not classified).
    pub(crate) fn turns_open(&self, st: &State<J>) -> bool {
        self.in_place(st) && st.queue.is_empty() && st.urgent.is_empty()
    }

    /// Worker `me`'s job ended with `outcome` while its place was `pass`:
    /// if the job still holds its counted place, the inbox's oldest job
    /// gets it without the pool lock, and the turn is logged; `settle`
    /// (storing the ended job's result) runs after that, so whoever sees
    /// the result and then takes the pool lock sees the count. `None`:
    /// take the pool lock instead (`settle` has not run).
    pub(crate) fn pass_turn(
        &self,
        me: u64,
        pass: &AtomicBool,
        outcome: Outcome,
        settle: &mut dyn FnMut(),
    ) -> Option<J> {
        if !pass.load(Ordering::Relaxed)
            || !self.turns.load(Ordering::Relaxed)
            || self.inbox.has_no_jobs()
        {
            return None;
        }
        let now = Instant::now();
        let taken = self.inbox.with(Refill::IfEmpty, |b| {
            // Under the inbox's lock: a shutdown's or a compensation's
            // change to these is ordered before or after this turn.
            if !self.turns.load(Ordering::Relaxed)
                || !pass.load(Ordering::Relaxed)
                || b.log.len() >= MAX_TURNS
            {
                return None;
            }
            let job = b.jobs.pop_front()?;
            let counted = b.counted > 0;
            if counted {
                b.counted -= 1;
            }
            job.mark().take_out();
            let next = self.current_of(&job, now, job.hint(), false);
            b.log.push(Turn {
                me,
                outcome,
                counted,
                next,
            });
            Some(job)
        });
        if taken.is_some() {
            // The result is stored after the inbox's lock published the
            // log's length: a joiner that sees it and then takes the pool
            // lock finds the turn to apply, so `stats()` counts the job.
            settle();
        }
        taken
    }

    /// Applies the workers' turns of `log` (under the pool lock and the
    /// inbox's head lock): each is a worker's report and take, replayed;
    /// `counted`: the head's jobs counted in place, which the state's
    /// `inboxed` equals once the log is applied.
    pub(crate) fn apply_turns(&self, st: &mut State<J>, log: &mut Vec<Turn>, counted: usize) {
        // The checks are skipped while unwinding (a drop that applies the
        // log on the way out must not panic again).
        let check = cfg!(any(debug_assertions, loom, shuttle)) && !std::thread::panicking();
        for t in log.drain(..) {
            // A passed run was watched and not found blocked: a quick
            // run of its kind, which never makes a kind learned.
            let promoted = self.learn(st, t.me, t.next.started, Probed::Skipped);
            debug_assert!(!promoted, "a quick run promoted a kind");
            Self::ended(st, t.outcome);
            let held = Self::release_current(st, t.me);
            // The worker read its place under the inbox's lock, which
            // every change that takes a place away holds too (I3).
            if check {
                assert!(held, "I3 a worker passed a place its job did not hold");
            }
            if t.counted {
                st.inboxed -= 1;
            } else {
                st.counters.submitted += 1;
            }
            if let Some(w) = st.workers.get_mut(&t.me) {
                w.after_park = false; // a run of jobs
            }
            self.begin(st, t.me, t.next, held);
        }
        if check {
            assert_eq!(st.inboxed, counted, "I1 the inbox's counted jobs");
        }
    }

    /// Takes the inbox's oldest counted job for a holder of the pool lock
    /// (its turn through the lock), if any.
    pub(crate) fn pop_inboxed(&self, st: &mut State<J>) -> Option<J> {
        if st.inboxed == 0 {
            return None;
        }
        self.inbox.with(Refill::Never, |b| {
            // Turns taken since this holder's look at the inbox took some:
            // apply them first, so the state is current and `counted`
            // says what is left.
            self.apply_turns(st, &mut b.log, b.counted);
            if b.counted == 0 {
                return None;
            }
            b.counted -= 1;
            st.inboxed -= 1;
            let job = b.jobs.pop_front()?;
            job.mark().take_out();
            Some(job)
        })
    }
}
