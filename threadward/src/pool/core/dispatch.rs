//! Dispatch (README.md: "Dispatch", "Concurrency management"): a submit,
//! and who is woken whenever room or work appears.

use super::queue::QueueMark;
use super::slot::Ticket;
use super::state::{Class, JobHint, Queue, State};
use super::{Core, Locked, QueuedJob, Wakes};
use std::sync::Arc;

use crate::sync::{fence, Condvar, Ordering};

/// Why `submit` did not queue a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShutDown,
    QueueFull,
    AtCapacity,
}

/// How `submit` queued a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// A parked worker was woken for it, or it waits within the queue's
    /// bound for the manager, a finishing worker, or room under the target.
    Queued,
    /// Queued, with worker slot `no` reserved for it: the caller creates
    /// that thread now, and on failure calls `withdraw`.
    CreateWorker(u64),
    /// Queued behind a full target: it waits for a running job to end or
    /// block (the caller makes sure the monitor watches).
    Waiting,
}

/// What a submit does with a job that needs a thread at `max_threads`.
enum Full {
    Refuse(Refusal),
    /// Queue it (an unbounded queue): a thread comes when one is freed.
    Wait,
}

/// What a submit decided under the lock.
enum Admit {
    Queue(Submitted),
    Refuse(Refusal),
    /// At `max_threads`: what to do unless a thread that left is gone and
    /// its place can be had (`reap_exits`, outside the lock, once).
    Full(Full),
}

impl<J: QueuedJob> Core<J> {
    /// Counted jobs that may start now without exceeding the target
    /// (unlimited without one).
    pub(crate) fn room(&self, st: &State<J>) -> usize {
        self.places(st).saturating_sub(st.running)
    }

    /// Counted jobs the pool runs at once now: the target, the backstop's
    /// extra and the adaptive places (unlimited without a target).
    pub(crate) fn places(&self, st: &State<J>) -> usize {
        match self.cfg.target {
            None => usize::MAX,
            Some(t) => t + st.extra + st.adaptive,
        }
    }

    /// Jobs of class `c` a worker could take right now: every `MayBlock`
    /// job, and the counted ones the target leaves room for.
    pub(crate) fn runnable(&self, st: &State<J>, c: Class) -> usize {
        match c {
            Class::Urgent => st.urgent.len(),
            Class::Counted => st.queue.len().min(self.room(st)),
        }
    }

    /// Threads the manager should create now (README: "deficit"), before
    /// the cap.
    pub(crate) fn wanted(&self, st: &State<J>) -> usize {
        if st.shutdown {
            return 0;
        }
        // (`spawning` below covers the reserved threads in `coming`.)
        let unserved: usize = [Class::Urgent, Class::Counted]
            .into_iter()
            .map(|c| {
                self.runnable(st, c)
                    .saturating_sub(st.notify.get(c) + self.spinners(st, c))
            })
            .sum();
        let spare_gap = if st.closing {
            0
        } else {
            self.cfg.min_idle.saturating_sub(st.idle())
        };
        (unserved + spare_gap).saturating_sub(st.spawning)
    }

    /// [`wanted`](Self::wanted) within `max_threads`.
    pub(crate) fn deficit(&self, st: &State<J>) -> usize {
        self.wanted(st)
            .min(self.cfg.max_threads.saturating_sub(st.threads))
    }

    /// Spinners that will take a job of class `c` without a wake-up: they
    /// serve counted jobs, and with a queue bound they are no promise (only
    /// promises count as "a worker on its way").
    fn spinners(&self, st: &State<J>, c: Class) -> usize {
        match c {
            Class::Counted if self.cfg.wait_bound().is_none() => st.spinning,
            _ => 0,
        }
    }

    /// The condvars of every parked worker.
    pub(crate) fn parked(st: &State<J>) -> impl Iterator<Item = Arc<Condvar>> + '_ {
        st.idle_stack.iter().map(|no| st.workers[no].cv.clone())
    }

    /// Claims the most recently parked worker for a job of class `c`.
    fn claim_idle(st: &mut State<J>, c: Class, wakes: &mut Wakes) -> bool {
        let Some(no) = st.idle_stack.pop() else {
            return false;
        };
        st.idle_low = st.idle_low.min(st.idle_stack.len());
        let slot = st.workers.get_mut(&no).expect("a parked worker has a slot");
        slot.ticket = Some(Ticket::Job(c));
        *st.notify.get_mut(c) += 1;
        wakes.workers.push(slot.cv.clone());
        true
    }

    /// Serves what can run now: claims parked workers for runnable jobs no
    /// promised worker will take, and asks the manager for threads when
    /// none is parked (or a thread on its way out must be joined first).
    pub(crate) fn dispatch(&self, st: &mut State<J>, wakes: &mut Wakes) {
        self.queued_hint.store(st.queued(), Ordering::Relaxed);
        for c in [Class::Urgent, Class::Counted] {
            while self.runnable(st, c) > st.promised(c) + self.spinners(st, c)
                && Self::claim_idle(st, c, wakes)
            {}
        }
        if st.closing && st.queued() == 0 {
            // Nothing left for a closing pool: parked workers exit.
            wakes.workers.extend(Self::parked(st));
        }
        // Jobs that no thread can run start a stall episode: the manager
        // times it (`check_stall`).
        let stalled = st.stall.is_none() && self.starved(st);
        if !st.manager_notified && (st.grow > 0 || self.deficit(st) > 0 || stalled) {
            st.manager_notified = true;
            wakes.manager = true;
        }
        self.note_saturation(st);
    }

    /// After a change that frees a place or a thread: serves what can run
    /// now, unlocks, and wakes whoever that concerns.
    pub(crate) fn serve_and_unlock(&self, mut st: Locked<'_, J>) {
        let mut wakes = Wakes::done();
        self.dispatch(&mut st, &mut wakes);
        self.wake(st, wakes);
    }

    /// Queues `job` and wakes a parked worker (and the manager if threads
    /// are wanted), after unlocking. The queue bound and `max_threads` are
    /// checked, and a thread reserved, in the same critical section as the
    /// push (README: "Dispatch").
    pub(crate) fn submit(&self, job: J) -> Result<Submitted, (J, Refusal)> {
        if job.hint() != JobHint::MayBlock && self.fast.load(Ordering::Relaxed) {
            // Somebody takes the lock soon: the job waits in the inbox
            // until then (README.md: "Submit without the pool lock").
            self.inbox.push(job, |j| j.mark().enter_counted());
            fence(Ordering::SeqCst);
            if !self.fast.load(Ordering::Relaxed) {
                // The gate shut meanwhile, and its unlocker may not have
                // seen this push: take the lock, which moves the inbox in
                // (and ends here the jobs a shutdown or close refused).
                drop(self.lock_refusing());
            }
            return Ok(Submitted::Queued);
        }
        let mut reaped = false;
        loop {
            let mut st = self.lock();
            let class = self.class_of(&st, &job);
            let full = match self.admit(&mut st, class) {
                Admit::Queue(submitted) => return Ok(self.push(st, job, class, submitted)),
                Admit::Refuse(r) => return Err((job, r)),
                Admit::Full(full) => full,
            };
            if !st.exited.is_empty() && !reaped {
                drop(st);
                reaped = true;
                self.reap_exits();
                continue;
            }
            return match full {
                Full::Refuse(r) => {
                    // A capacity refusal: the first of an episode is
                    // reported by the caller (`refusal_began`).
                    st.counters.refused += 1;
                    if !st.refusing {
                        st.refusing = true;
                        st.refusal_unreported = true;
                    }
                    Err((job, r))
                }
                Full::Wait => Ok(self.push(st, job, class, Submitted::Queued)),
            };
        }
    }

    /// Whether a job of class `c` may be queued, and whether it needs a
    /// thread of its own first.
    fn admit(&self, st: &mut State<J>, c: Class) -> Admit {
        if st.shutdown || st.closing {
            return Admit::Refuse(Refusal::ShutDown);
        }
        // Could a promise be made for it now? (The target's room goes to
        // the jobs ahead of it first, and to the promised workers.)
        let may_run = match c {
            Class::Urgent => true,
            Class::Counted => (st.queue.len() + 1).min(self.room(st)) > st.promised(Class::Counted),
        };
        if st.idle() > 0 && may_run {
            return Admit::Queue(Submitted::Queued); // `dispatch` claims one
        }
        let unserved = st.unserved(Class::Counted) + st.unserved(Class::Urgent) + 1;
        let over = st.members() == 0 || self.cfg.wait_bound().is_some_and(|n| unserved > n);
        if !over {
            return Admit::Queue(Submitted::Queued);
        }
        if st.threads < self.cfg.max_threads && (may_run || st.members() == 0) {
            return Admit::Queue(Submitted::CreateWorker(self.reserve_locked(st, Some(c))));
        }
        Admit::Full(match self.cfg.queue {
            Queue::Handoff => Full::Refuse(Refusal::AtCapacity),
            Queue::Bounded(_) => Full::Refuse(Refusal::QueueFull),
            Queue::Unbounded => Full::Wait,
        })
    }

    fn push(&self, mut st: Locked<'_, J>, job: J, c: Class, mut submitted: Submitted) -> Submitted {
        match c {
            Class::Urgent => st.urgent.push(job),
            Class::Counted => st.queue.push(job),
        }
        st.counters.submitted += 1;
        st.refusing = false; // an accepted job ends a refusal episode
        let mut wakes = Wakes::default();
        self.dispatch(&mut st, &mut wakes);
        // The claim may have used the last spares: a standing request.
        let spare_gap = self
            .cfg
            .min_idle
            .saturating_sub(st.idle() + st.spawning)
            .min(self.cfg.max_threads.saturating_sub(st.threads));
        st.grow = st.grow.max(spare_gap);
        if !st.manager_notified && st.grow > 0 {
            st.manager_notified = true;
            wakes.manager = true;
        }
        if submitted == Submitted::Queued && self.saturated(&st) {
            submitted = Submitted::Waiting;
        }
        self.wake(st, wakes);
        submitted
    }

    /// The class a job waits in: its hint's, or `Urgent` for an unhinted
    /// job whose kind was learned to block (README.md: "Learned hints").
    pub(crate) fn class_of(&self, st: &State<J>, job: &J) -> Class {
        let hint = job.hint();
        if hint != JobHint::Auto || !self.cfg.learn || st.learned.learned == 0 {
            return hint.class(); // nothing learned: no lookup
        }
        match job.kind() {
            Some(k) if st.learned.is_learned(k) => Class::Urgent,
            _ => hint.class(),
        }
    }

    /// Whether a capacity refusal began an episode that nobody reported
    /// yet (then the caller reports it: one warning per episode); the
    /// pool's threads, queued jobs and refusals so far.
    pub(crate) fn refusal_began(&self) -> Option<(usize, usize, u64)> {
        let mut st = self.lock();
        std::mem::take(&mut st.refusal_unreported)
            .then(|| (st.threads, st.queued(), st.counters.refused))
    }

    /// Whether a counted job may be submitted without the lock now
    /// (README.md: "Submit without the pool lock"): only where the lock
    /// would just queue it — an unbounded queue, nothing learned to
    /// block, the pool accepting — and only while somebody is sure to take
    /// the lock soon and serve it: the pool is saturated (a running job's
    /// end or block, or the monitor, takes the lock next), or a worker
    /// spins (it polls the inbox, then locks).
    pub(crate) fn fast_ok(&self, st: &State<J>) -> bool {
        self.cfg.target.is_some()
            && self.cfg.wait_bound().is_none()
            && !st.shutdown
            && !st.closing
            && !(self.cfg.learn && st.learned.learned > 0)
            && (st.spinning > 0 || self.saturated(st))
    }

    /// Whether work waits for room under the target (the monitor watches
    /// such a pool).
    pub(crate) fn saturated(&self, st: &State<J>) -> bool {
        !st.shutdown && !st.queue.is_empty() && self.room(st) <= st.notify.counted
    }

    /// Records, under the lock, that the pool may have become saturated.
    pub(crate) fn note_saturation(&self, st: &State<J>) {
        if self.cfg.target.is_some() && self.saturated(st) {
            self.saturation.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the pool became saturated since the last call (then the
    /// caller wakes the monitor). One load when nothing happened.
    pub(crate) fn take_saturation(&self) -> bool {
        self.saturation.load(Ordering::Relaxed) && self.saturation.swap(false, Ordering::Relaxed)
    }

    /// Undoes a `Submitted::CreateWorker` whose thread the OS refused:
    /// releases the reservation and takes the job `id` back out of the
    /// queue, as if it had never been submitted. `None` if a worker took
    /// the job (or shutdown resolved it) meanwhile: then it was served.
    pub(crate) fn withdraw(&self, no: u64, id: u64) -> Option<J> {
        let mut st = self.lock();
        self.unreserve_locked(&mut st, no);
        let job = st.queue.remove(id).or_else(|| st.urgent.remove(id));
        if job.is_some() {
            st.counters.submitted -= 1;
        }
        self.serve_and_unlock(st);
        job
    }

    /// A queued job whose mark is `mark` is cancelled: it is marked dead
    /// where it waits (the mark says which queue: README.md: "Cancelling a
    /// queued job", O(1)) and counted cancelled. Whether it was still
    /// queued (if not, a worker took it and counts it, or a shutdown did).
    /// The caller has dropped its closure already.
    pub(crate) fn remove_queued(&self, mark: &QueueMark) -> bool {
        let mut st = self.lock();
        // Every job its submitter marked is in a queue while the kill runs
        // (`lock` skips an inbox that merely looked empty).
        let killed = st.take_inbox_then(|st| st.queue.kill(mark) || st.urgent.kill(mark));
        if !killed {
            return false;
        }
        st.counters.cancelled += 1;
        self.serve_and_unlock(st);
        true
    }
}
