//! A worker thread's life as the pool counts it (README.md: "Spare
//! management", "Shutdown"): reserve, spawned, exit, joined; and the
//! pool's: shutdown, close, the waits for them.

use std::sync::Arc;
use std::time::Instant;

use super::slot::{Current, ExitHandle, Finishing, Handle, WorkerSlot};
use super::state::{Class, State};
use super::turn::Block;
use super::{Core, QueuedJob, Wakes};
use crate::pool::stats::PoolStats;
use crate::record::ThreadRecord;
use crate::stop::StopSource;

/// Handles of left threads looked at per `reap_exits`.
const EXIT_LOOKS: usize = 16;

/// How long a worker leaving a shut-down pool waits for the exit of the
/// one that left before it (`pace_exit`).
const PACE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a worker was when it left (its exit guard says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// It never made its first `next` call.
    Starting,
    /// Between jobs (the loop ended: shutdown, reaped, over `max_idle`).
    Idle,
    /// It unwound out of a job whose outcome was not reported.
    Busy,
}

/// A worker as a shutdown report sees it.
pub(crate) struct WorkerView {
    pub(crate) rec: Arc<ThreadRecord>,
    /// The running job: id, start, whether its stop was requested.
    pub(crate) current: Option<(u64, Instant, bool)>,
    /// The previous job, if its user code may still run on the worker.
    pub(crate) finishing: Option<Finishing>,
}

impl<J: QueuedJob> Core<J> {
    /// Reserves a new worker slot (`threads` and `spawning` count it, and
    /// `coming` if a submitter reserves it for a job of class `for_job`).
    /// Callers check `max_threads` in the same critical section.
    pub(crate) fn reserve_locked(&self, st: &mut State<J>, for_job: Option<Class>) -> u64 {
        assert!(st.threads < self.cfg.max_threads, "max_threads exceeded");
        st.threads += 1;
        st.spawning += 1;
        if let Some(c) = for_job {
            *st.coming.get_mut(c) += 1;
        }
        st.counters.peak = st.counters.peak.max(st.threads);
        let no = st.next_worker;
        st.next_worker += 1;
        st.workers.insert(
            no,
            WorkerSlot {
                coming: for_job,
                ..WorkerSlot::default()
            },
        );
        no
    }

    /// A reserved worker stops counting as being created (it started, or
    /// its creation failed); the class of the promise it held, if any.
    pub(crate) fn started_locked(st: &mut State<J>, no: u64) -> Option<Class> {
        st.spawning -= 1;
        let c = st.workers.get_mut(&no)?.coming.take()?;
        *st.coming.get_mut(c) -= 1;
        Some(c)
    }

    /// Reserves a worker slot for `build`'s spares.
    pub(crate) fn reserve(&self) -> u64 {
        let mut st = self.lock();
        self.reserve_locked(&mut st, None)
    }

    /// Records a successful creation of worker `no`.
    pub(crate) fn spawned(&self, no: u64, rec: Option<Arc<ThreadRecord>>, handle: ExitHandle) {
        let mut st = self.lock();
        st.counters.threads_spawned += 1;
        match st.workers.get_mut(&no) {
            Some(slot) => {
                slot.handle = Handle::Held(handle);
                slot.rec = rec;
            }
            // It already left (counted in `exiting`): its handle waits with
            // the other exits to be joined.
            None => st.exited.push_back(handle),
        }
        // `settle_exits` may wait for it, the manager reaps it.
        let mut wakes = Self::exit_pending(&mut st);
        wakes.done = true;
        self.wake(st, wakes);
    }

    /// Undoes the reservation of worker `no` after the OS refused it.
    pub(crate) fn spawn_failed(&self, no: u64) {
        let mut st = self.lock();
        self.unreserve_locked(&mut st, no);
        self.serve_and_unlock(st);
    }

    pub(crate) fn unreserve_locked(&self, st: &mut State<J>, no: u64) {
        Self::started_locked(st, no);
        st.threads -= 1;
        st.workers.remove(&no);
        st.counters.spawn_failures += 1;
    }

    /// Bookkeeping of worker `me` leaving the pool. The thread stays
    /// counted in `threads` (as `exiting`) until its exit ended: its handle
    /// waits in `exited` for `reap_exits`.
    ///
    /// Runs from the worker's exit guard, so also if the worker unwinds.
    pub(crate) fn exit(&self, me: u64, leaving: Leaving) {
        let mut st = self.lock();
        // Shutdown pacing (README.md: "Shutdown"): the thread that left
        // `exit_window` places before us, whose exit we wait for first.
        let n = st.exited.len();
        let k = self.cfg.exit_window.max(1);
        let pace = if st.shutdown && n >= k {
            st.exited.remove(n - k)
        } else {
            None
        };
        match leaving {
            Leaving::Starting => {
                Self::started_locked(&mut st, me);
            }
            Leaving::Busy => {
                Self::release_current(&mut st, me);
                st.busy -= 1;
                st.counters.panicked += 1;
            }
            Leaving::Idle => {}
        }
        // Never parked when it leaves, but be sure.
        st.idle_stack.retain(|&w| w != me);
        match st.workers.remove(&me).map(|s| s.handle) {
            Some(Handle::Held(h)) => {
                st.exiting += 1;
                st.exited.push_back(h);
            }
            // `spawned` will bring the handle.
            Some(Handle::Pending) => st.exiting += 1,
            // Detached by a shutdown (or unknown): nobody joins it.
            Some(Handle::Detached) | None => st.threads -= 1,
        }
        // One member fewer: if that leaves jobs or spares short, ask the
        // manager (a job queued while we were leaving must still run); it
        // also reaps this thread once it is gone.
        let mut wakes = Self::exit_pending(&mut st);
        wakes.done = true;
        self.dispatch(&mut st, &mut wakes);
        self.wake(st, wakes);
        if let Some(prev) = pace {
            self.pace_exit(prev);
        }
    }

    /// Shutdown pacing: waits (at most `PACE_WAIT`) for the exit of the
    /// thread that left `exit_window` (the CPUs) places before this one,
    /// and joins it if it ended. A
    /// thousand workers that leave at once otherwise all exit at once, and
    /// the kernel's exit work (their stacks unmapped, the address space's
    /// lock, a TLB shootdown each) fights the stop requests still being
    /// delivered: 1 000 blocked jobs saw their stop after 30-60 ms instead
    /// of 11-33 ms on 2 CPUs. One exit per CPU at a time (the first pool's
    /// exit chain did one at a time), but never blindly: an exit a job's thread-local destructor holds up
    /// for ever costs its successor `PACE_WAIT`, once, and the handle goes
    /// back for the shutdown to detach.
    fn pace_exit(&self, prev: ExitHandle) {
        if prev.wait_ended(PACE_WAIT) {
            prev.join(); // returns at once: the thread is gone
            let mut st = self.lock();
            st.exiting -= 1;
            st.threads -= 1;
            self.wake(st, Wakes::done());
        } else {
            let mut st = self.lock();
            st.exited.push_back(prev);
            self.wake(st, Wakes::done());
        }
    }

    /// Handles wait to be joined: the manager is told once (it joins each
    /// thread when it is gone, looking again every millisecond until then).
    fn exit_pending(st: &mut State<J>) -> Wakes {
        let mut wakes = Wakes::default();
        // A shutdown settles the exits itself: the manager is left out of
        // a thousand workers leaving at once.
        if !st.exited.is_empty() && !st.manager_notified && !st.shutdown {
            st.manager_notified = true;
            wakes.manager = true;
        }
        wakes
    }

    /// Joins the threads that left the pool and are gone, and stops
    /// counting them; returns how many. It looks at no more than `EXIT_LOOKS`
    /// handles, the oldest first, and does its `/proc` lookups and joins
    /// outside the lock (they are syscalls: not on the pool lock while a
    /// thousand workers leave at once). Handles of threads still there go
    /// back at the end, so one whose exit never ends (a job's thread-local
    /// destructor that blocks) hides none of the others and blocks nobody.
    pub(crate) fn reap_exits(&self) -> usize {
        let mut st = self.lock();
        let n = st.exited.len().min(EXIT_LOOKS);
        if n == 0 {
            return 0;
        }
        let looked: Vec<ExitHandle> = st.exited.drain(..n).collect();
        drop(st);
        let (ended, pending): (Vec<_>, Vec<_>) = looked.into_iter().partition(|h| h.has_ended());
        let gone = ended.len();
        ended.into_iter().for_each(|h| h.join());
        let mut st = self.lock();
        st.exited.extend(pending);
        st.exiting -= gone;
        st.threads -= gone;
        self.serve_and_unlock(st);
        gone
    }

    /// Worker `me`'s current job ends: it leaves `running` if it counted
    /// there; returns whether it did (the place the worker held), and keeps
    /// the job as `finishing` while its user code may still run.
    pub(crate) fn release_current(st: &mut State<J>, me: u64) -> bool {
        let Some(slot) = st.workers.get_mut(&me) else {
            return false;
        };
        let Some(cur) = slot.current.take() else {
            return false;
        };
        slot.finishing = Some(Finishing {
            job: cur.job,
            started: cur.started,
        });
        let held = cur.in_running();
        if held {
            st.running -= 1;
        }
        held
    }

    /// Changes worker `me`'s current job with `f`, keeping `running` equal
    /// to the number of jobs that count in it.
    pub(crate) fn update_current(st: &mut State<J>, me: u64, f: impl FnOnce(&mut Current)) {
        let Some(cur) = st.workers.get_mut(&me).and_then(|w| w.current.as_mut()) else {
            return;
        };
        let before = cur.in_running();
        f(cur);
        match (before, cur.in_running()) {
            (true, false) => st.running -= 1,
            (false, true) => st.running += 1,
            _ => {}
        }
    }

    /// Starts a shutdown: refuses submissions, takes the queue, and returns
    /// the taken jobs and the stop sources of running jobs.
    pub(crate) fn begin_shutdown(&self) -> (Vec<J>, Vec<StopSource>) {
        let mut st = self.lock_refusing();
        st.shutdown = true;
        let mut jobs: Vec<J> = st.urgent.drain().collect();
        jobs.extend(st.queue.drain());
        st.counters.cancelled += jobs.len() as u64;
        let stops = st
            .workers
            .values()
            .filter_map(|w| w.current.as_ref()?.stop_source())
            .collect();
        let wakes = Self::wake_all_parked(&st);
        self.wake(st, wakes);
        (jobs, stops)
    }

    /// Stops accepting; queued jobs still run, then workers exit.
    pub(crate) fn begin_close(&self) {
        let mut st = self.lock_refusing();
        st.closing = true;
        let wakes = Self::wake_all_parked(&st);
        self.wake(st, wakes);
    }

    fn wake_all_parked(st: &State<J>) -> Wakes {
        Wakes {
            workers: st
                .idle_stack
                .iter()
                .map(|no| st.workers[no].cv.clone())
                .collect(),
            manager: true,
            done: true,
        }
    }

    /// Waits until `done(state)` holds or `deadline` passes; returns
    /// whether it holds. `me`: the caller is a job on this pool's worker
    /// `me`, and its wait counts as blocking (it frees its place under the
    /// target, so the jobs it waits for can run).
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        me: Option<u64>,
        done: impl Fn(&State<J>) -> bool,
    ) -> bool {
        if done(&self.lock()) {
            return true;
        }
        if let Some(me) = me {
            self.block(me, Block::Enter);
        }
        let mut st = self.lock();
        st.done_waiters += 1;
        let (mut st, ok) = st.wait_done(deadline, |st| done(st));
        st.done_waiters -= 1;
        drop(st);
        if let Some(me) = me {
            self.block(me, Block::Leave);
        }
        ok
    }

    /// Waits until no job is queued or running but the caller's own
    /// (`me`), or at `max_threads` the caller is what blocks the rest.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>, me: Option<u64>) -> bool {
        let inside = usize::from(me.is_some());
        let max = self.cfg.max_threads;
        // (The inbox too: the waiter's re-checks hold the lock without
        // moving it in.)
        self.wait_until(deadline, me, |st| {
            st.busy <= inside
                && ((st.queued() == 0 && self.inbox.is_empty())
                    || (inside == 1 && st.threads >= max))
        })
    }

    /// Waits until no worker but the caller's own is left in the pool and
    /// nothing is queued (a closing pool still runs its queue: a job queued
    /// while its last worker left gets a new thread), or the caller, the
    /// last worker at `max_threads`, is what keeps the queue from running.
    pub(crate) fn wait_members(&self, deadline: Option<Instant>, me: Option<u64>) -> bool {
        let inside = usize::from(me.is_some());
        let max = self.cfg.max_threads;
        self.wait_until(deadline, me, |st| {
            st.members() <= inside && (st.queued() == 0 || (inside == 1 && st.members() >= max))
        })
    }

    /// At a shutdown's deadline: detaches every worker's handle (an exited
    /// worker's thread-local destructors may still run; joining could
    /// outlast the deadline) and returns the workers that run user code.
    pub(crate) fn detach_all(&self) -> Vec<WorkerView> {
        let mut st = self.lock();
        let mut views = Vec::new();
        for slot in st.workers.values_mut() {
            if matches!(slot.handle, Handle::Held(_)) {
                slot.handle = Handle::Detached;
            }
            let Some(rec) = &slot.rec else { continue };
            let current = slot
                .current
                .as_ref()
                .map(|c| (c.job, c.started, c.stop_requested()));
            let finishing = slot.finishing.filter(|f| rec.finishing() == Some(f.job));
            if current.is_some() || finishing.is_some() {
                views.push(WorkerView {
                    rec: rec.clone(),
                    current,
                    finishing,
                });
            }
        }
        views
    }

    /// After a shutdown's workers left the pool: stops counting the
    /// threads on their way out, so `threads` counts only stragglers. They
    /// are detached, not joined (no new thread will take their place; a
    /// job's thread-local destructor may hold up an exit for ever): it
    /// waits (until `deadline`) only for a handle still on its way from
    /// `spawned`, and for joins other threads have begun.
    pub(crate) fn settle_exits(&self, deadline: Option<Instant>) {
        let mut st = self.lock();
        loop {
            let n = std::mem::take(&mut st.exited).len();
            st.exiting -= n;
            st.threads -= n;
            if st.exiting == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            st.done_waiters += 1;
            let (s, _) = st.wait_done(deadline, |st| st.exiting == 0 || !st.exited.is_empty());
            st = s;
            st.done_waiters -= 1;
        }
    }

    /// The pool's counts, read in one critical section.
    pub(crate) fn stats(&self) -> PoolStats {
        let st = self.lock();
        let c = st.counters;
        PoolStats {
            threads: st.threads,
            idle: st.idle(),
            running: st.running,
            adaptive_places: st.adaptive,
            busy: st.busy,
            queued: st.queued(),
            peak: c.peak,
            threads_spawned: c.threads_spawned,
            submitted: c.submitted,
            completed: c.completed,
            panicked: c.panicked,
            cancelled: c.cancelled,
            spawn_failures: c.spawn_failures,
            compensated: c.compensated_blocked + c.compensated_hogs,
            recounted: c.recounted,
            backstops: c.backstops,
            stalls: c.stalls,
            refused: c.refused,
            overdue: c.overdue,
            learned_kinds: st.learned.learned,
            learned_runs: st.learned.runs,
        }
    }
}
