//! The dispatch protocol of README.md, independent of threads and jobs so
//! that loom can check it: a queue of `J`, counts, and three condvars.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::ThreadRecord;
use crate::stop::StopSource;
use crate::sync::{self, Condvar, Mutex, MutexGuard};

/// What the protocol needs to know of a queued job.
pub(crate) trait QueuedJob: Send {
    fn id(&self) -> u64;
    fn stop_source(&self) -> Option<StopSource>;
}

/// How many jobs may wait in a pool with no worker on its way to them.
///
/// A job has a worker on its way when a parked worker was woken for it or
/// a thread is being created for it. With `Bounded(n)` and `None`, a job
/// that would be the `n+1`-th to wait without one gets a thread at once:
/// [`Pool::spawn`](crate::Pool::spawn) reserves and creates it before
/// returning (as Java's `ThreadPoolExecutor::execute` does), or refuses the
/// job if `max_threads` are running or the OS refuses the thread. The
/// bound holds at every instant, during bursts and while the OS refuses
/// threads.
///
/// # Examples
///
/// ```
/// use threadward::{Pool, Queue};
///
/// let pool = Pool::builder().max_threads(1).queue(Queue::None).build().unwrap();
/// let blocker = pool.spawn(|cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
/// # let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
/// # while pool.stats().busy == 0 { assert!(std::time::Instant::now() < deadline); std::thread::yield_now(); }
/// assert!(pool.spawn(|_| ()).is_err()); // the only thread is busy, no queue
/// blocker.cancel();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Queue {
    /// Jobs wait without limit (the default).
    #[default]
    Unbounded,
    /// At most this many jobs wait without a worker on their way; beyond
    /// that a thread is created for the job, and at `max_threads` the job
    /// is refused with [`SpawnError::QueueFull`](crate::SpawnError::QueueFull).
    Bounded(usize),
    /// Nothing waits: every job gets a parked worker or a new thread, and
    /// at `max_threads` it is refused with
    /// [`SpawnError::AtCapacity`](crate::SpawnError::AtCapacity).
    None,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) min_idle: usize,
    pub(crate) max_threads: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) queue: Queue,
}

/// The job a worker runs right now.
pub(crate) struct Current {
    pub(crate) job: u64,
    pub(crate) stop: Option<StopSource>,
    pub(crate) started: Instant,
}

/// One worker thread as the pool knows it.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    /// `None` until thread creation returned; dropped (detached) for stragglers.
    pub(crate) handle: Option<JoinHandle<()>>,
    pub(crate) rec: Option<Arc<ThreadRecord>>,
    pub(crate) current: Option<Current>,
    /// Certain to arrive and not started yet (counted in `State::coming`).
    coming: bool,
    /// Has made its first `next` call.
    started: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) submitted: u64,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
    pub(crate) cancelled: u64,
    pub(crate) threads_spawned: u64,
    pub(crate) spawn_failures: u64,
    pub(crate) peak: usize,
}

pub(crate) struct State<J> {
    pub(crate) queue: VecDeque<J>,
    pub(crate) idle: usize,
    pub(crate) notify: usize,
    /// Exit tickets handed to parked workers by the manager's idle reaping
    /// (already taken off `idle`, like `notify`).
    reap: usize,
    /// Lowest `idle` since the manager's current idle window began.
    idle_low: usize,
    /// The manager is in a timed idle window (no need to wake it when
    /// spares beyond `min_idle` appear).
    idle_timer: bool,
    pub(crate) threads: usize,
    pub(crate) spawning: usize,
    /// Of `spawning`, the threads certain to arrive: reserved by submitters
    /// for their jobs (`Submitted::CreateWorker`; if the OS refuses one,
    /// its job is taken back out), or already created. Only these count as
    /// "a worker on its way" for the queue bound: a thread the manager has
    /// yet to create may still be refused, and a job counted on it would
    /// then wait beyond the bound.
    coming: usize,
    /// Spares requested from the manager by a dispatch that used the last
    /// ones, not yet reserved. Honoured even if the spares are back by the
    /// time the manager runs: re-checking would wake it for nothing on
    /// every dispatch that briefly used the last spare. Growth for queued
    /// jobs is not recorded here but re-checked live, so a flood of short
    /// jobs does not create threads for jobs already gone (README:
    /// "Dispatch").
    grow: usize,
    pub(crate) busy: usize,
    pub(crate) shutdown: bool,
    pub(crate) closing: bool,
    manager_notified: bool,
    /// Threads blocked in `wait_until`: `done_cv` is notified only if any.
    done_waiters: usize,
    next_worker: u64,
    pub(crate) workers: HashMap<u64, WorkerSlot>,
    last_exiting: Option<JoinHandle<()>>,
    pub(crate) counters: Counters,
}

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
    /// bound for the manager or a finishing worker.
    Queued,
    /// Queued, with worker slot `no` reserved for it: the caller creates
    /// that thread now, and on failure calls `withdraw`.
    CreateWorker(u64),
}

/// How a worker's job ended (reported with its next `next` call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    /// Cancelled after it was taken from the queue, before it started.
    Skipped,
}

pub(crate) enum Next<J> {
    Run(J),
    Exit,
}

pub(crate) struct Core<J> {
    st: Mutex<State<J>>,
    worker_cv: Condvar,
    manager_cv: Condvar,
    done_cv: Condvar,
    pub(crate) cfg: Config,
}

impl<J: QueuedJob> Core<J> {
    pub(crate) fn new(cfg: Config) -> Core<J> {
        Core {
            st: Mutex::new(State {
                queue: VecDeque::new(),
                idle: 0,
                notify: 0,
                reap: 0,
                idle_low: 0,
                idle_timer: false,
                threads: 0,
                spawning: 0,
                coming: 0,
                grow: 0,
                busy: 0,
                shutdown: false,
                closing: false,
                manager_notified: false,
                done_waiters: 0,
                next_worker: 0,
                workers: HashMap::new(),
                last_exiting: None,
                counters: Counters::default(),
            }),
            worker_cv: Condvar::new(),
            manager_cv: Condvar::new(),
            done_cv: Condvar::new(),
            cfg,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<J>> {
        sync::lock(&self.st)
    }

    /// Threads the manager should create now (README: "deficit").
    fn deficit(&self, st: &State<J>) -> usize {
        if st.shutdown {
            return 0;
        }
        let unserved = st.queue.len().saturating_sub(st.notify);
        let spare_gap = if st.closing {
            0
        } else {
            self.cfg.min_idle.saturating_sub(st.idle)
        };
        let wanted = (unserved + spare_gap).saturating_sub(st.spawning);
        wanted.min(self.cfg.max_threads.saturating_sub(st.threads))
    }

    /// The most jobs that may wait with no worker on their way, if the
    /// queue policy bounds them.
    fn wait_bound(&self) -> Option<usize> {
        match self.cfg.queue {
            Queue::Unbounded => None,
            Queue::Bounded(n) => Some(n),
            Queue::None => Some(0),
        }
    }

    /// Queues `job` and wakes a parked worker (and the manager if threads
    /// are wanted), after unlocking. The queue bound and `max_threads` are
    /// checked, and a thread reserved, in the same critical section as the
    /// push (README: "Dispatch").
    pub(crate) fn submit(&self, job: J) -> Result<Submitted, (J, Refusal)> {
        let mut st = self.lock();
        if st.shutdown || st.closing {
            return Err((job, Refusal::ShutDown));
        }
        let mut submitted = Submitted::Queued;
        let wake_worker = st.idle > 0;
        if !wake_worker {
            // Jobs with no worker on its way (a woken one, or one certain to arrive),
            // counting this one.
            let unserved = (st.queue.len() + 1).saturating_sub(st.notify + st.coming);
            let over = st.threads == 0 || self.wait_bound().is_some_and(|n| unserved > n);
            if over {
                if st.threads < self.cfg.max_threads {
                    submitted = Submitted::CreateWorker(self.reserve_locked(&mut st, true));
                } else if self.cfg.queue == Queue::None {
                    return Err((job, Refusal::AtCapacity));
                } else {
                    return Err((job, Refusal::QueueFull));
                }
            }
        }
        st.queue.push_back(job);
        st.counters.submitted += 1;
        if wake_worker {
            st.idle -= 1;
            st.notify += 1;
            st.idle_low = st.idle_low.min(st.idle);
        }
        let spare_gap = self
            .cfg
            .min_idle
            .saturating_sub(st.idle + st.spawning)
            .min(self.cfg.max_threads.saturating_sub(st.threads));
        st.grow = st.grow.max(spare_gap);
        let wake_manager = !st.manager_notified && (st.grow > 0 || self.deficit(&st) > 0);
        if wake_manager {
            st.manager_notified = true;
        }
        drop(st);
        if wake_worker {
            self.worker_cv.notify_one();
        }
        if wake_manager {
            self.manager_cv.notify_one();
        }
        Ok(submitted)
    }

    /// Undoes a `Submitted::CreateWorker` whose thread the OS refused:
    /// releases the reservation and takes the job `id` back out of the
    /// queue, as if it had never been submitted. `None` if a worker took
    /// the job (or shutdown resolved it) meanwhile: then it was served.
    pub(crate) fn withdraw(&self, no: u64, id: u64) -> Option<J> {
        let mut st = self.lock();
        self.unreserve_locked(&mut st, no);
        let pos = st.queue.iter().position(|j| j.id() == id);
        let job = pos.and_then(|p| st.queue.remove(p));
        if job.is_some() {
            st.counters.submitted -= 1;
        }
        self.notify_done(st);
        job
    }

    /// Reserves a new worker slot (`threads` and `spawning` count it, and
    /// `coming` if a submitter reserves it for its job). Callers check
    /// `max_threads` in the same critical section.
    fn reserve_locked(&self, st: &mut State<J>, for_job: bool) -> u64 {
        assert!(st.threads < self.cfg.max_threads, "max_threads exceeded");
        st.threads += 1;
        st.spawning += 1;
        st.coming += usize::from(for_job);
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
    /// its creation failed).
    fn started_locked(st: &mut State<J>, no: u64) {
        debug_assert!(st.spawning > 0, "spawning underflow");
        st.spawning -= 1;
        if let Some(w) = st.workers.get_mut(&no) {
            w.started = true;
            if std::mem::take(&mut w.coming) {
                st.coming -= 1;
            }
        }
    }

    /// Reserves a worker slot for `build`'s spares.
    pub(crate) fn reserve(&self) -> u64 {
        let mut st = self.lock();
        self.reserve_locked(&mut st, false)
    }

    /// Records a successful creation of worker `no`.
    pub(crate) fn spawned(&self, no: u64, rec: Arc<ThreadRecord>, handle: JoinHandle<()>) {
        let mut st = self.lock();
        st.counters.threads_spawned += 1;
        let orphan = match st.workers.get_mut(&no) {
            Some(slot) => {
                slot.handle = Some(handle);
                slot.rec = Some(rec);
                if !slot.started && !slot.coming {
                    // Created, not yet at the queue: certain to arrive.
                    slot.coming = true;
                    st.coming += 1;
                }
                None
            }
            // It already exited: hand its handle to the exit chain.
            None => st.last_exiting.replace(handle),
        };
        drop(st);
        if let Some(h) = orphan {
            let _ = h.join();
        }
    }

    /// Undoes the reservation of worker `no` after the OS refused it.
    pub(crate) fn spawn_failed(&self, no: u64) {
        let mut st = self.lock();
        self.unreserve_locked(&mut st, no);
        self.notify_done(st);
    }

    fn unreserve_locked(&self, st: &mut State<J>, no: u64) {
        debug_assert!(st.threads > 0, "threads underflow");
        Self::started_locked(st, no);
        st.threads -= 1;
        st.workers.remove(&no);
        st.counters.spawn_failures += 1;
    }

    /// Releases the lock and wakes `wait_until` callers, if there are any
    /// (an unconditional `notify_all` is a syscall on the worker's path).
    fn notify_done(&self, st: MutexGuard<'_, State<J>>) {
        let wake = st.done_waiters > 0;
        drop(st);
        if wake {
            self.done_cv.notify_all();
        }
    }

    /// Counts how a worker's job ended, running `settle` (which stores the
    /// job's result) in the same critical section: once `join` returned,
    /// `stats()` includes the job, and once `wait_idle` returned, every job
    /// it waited for has its result. The worker stays this job's until its
    /// next `next` (a detached job's value is dropped on it meanwhile).
    pub(crate) fn report(&self, outcome: Outcome, settle: &mut dyn FnMut()) {
        let mut st = self.lock();
        settle();
        debug_assert!(st.busy > 0, "busy underflow");
        st.busy -= 1;
        match outcome {
            Outcome::Completed => st.counters.completed += 1,
            Outcome::Panicked => st.counters.panicked += 1,
            Outcome::Skipped => st.counters.cancelled += 1,
        }
        // Someone waits for a count to drop (wait_idle, possibly from
        // inside a job, so not only for busy == 0).
        self.notify_done(st);
    }

    /// The worker loop's one call: take the next job, parking while there
    /// is none. `first` on the worker's first call; `set_idle` tells the
    /// caller when the worker parks and unparks (for the registry).
    pub(crate) fn next(&self, me: u64, first: bool, set_idle: impl Fn(bool)) -> Next<J> {
        let mut st = self.lock();
        if first {
            Self::started_locked(&mut st, me);
        } else if let Some(slot) = st.workers.get_mut(&me) {
            slot.current = None;
        }
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.busy += 1;
                let current = Current {
                    job: job.id(),
                    stop: job.stop_source(),
                    started: Instant::now(),
                };
                if let Some(slot) = st.workers.get_mut(&me) {
                    slot.current = Some(current);
                }
                return Next::Run(job);
            }
            if st.shutdown || st.closing {
                return Next::Exit;
            }
            st.idle += 1;
            set_idle(true);
            if st.idle == self.cfg.min_idle + 1 && !st.idle_timer && !st.manager_notified {
                // Spares beyond min_idle now exist: the manager starts its
                // idle timer (rare: only when crossing the threshold).
                st.manager_notified = true;
                self.manager_cv.notify_one();
            }
            // An untimed wait: a timed one arms a timer on every park and
            // measurably slows the wake-up (README: "Idle timeout").
            loop {
                st = sync::wait(&self.worker_cv, st);
                if st.notify > 0 {
                    // Claimed by a submitter, which already took us off `idle`.
                    st.notify -= 1;
                    break;
                }
                if st.reap > 0 {
                    // Reaped by the manager, which already took us off `idle`.
                    st.reap -= 1;
                    if st.queue.len() > st.notify {
                        // A job came in that no claimed worker will take
                        // (its submitter saw no idle worker): run it instead.
                        break;
                    }
                    set_idle(false);
                    return Next::Exit;
                }
                if st.shutdown || st.closing {
                    debug_assert!(st.idle > 0, "idle underflow");
                    st.idle -= 1;
                    break;
                }
            }
            set_idle(false);
        }
    }

    /// Bookkeeping of worker `me` leaving; returns the previous leaver's
    /// handle for the caller to join outside the lock.
    ///
    /// Runs from the worker's exit guard, so also if the worker unwinds:
    /// `starting` (it never made its first `next`) and `busy` (it unwound
    /// out of a job) undo what that left counted.
    pub(crate) fn exit(&self, me: u64, starting: bool, busy: bool) -> Option<JoinHandle<()>> {
        let mut st = self.lock();
        debug_assert!(st.threads > 0, "threads underflow");
        st.threads -= 1;
        if starting {
            Self::started_locked(&mut st, me);
        }
        if busy {
            st.busy -= 1;
            st.counters.panicked += 1;
        }
        let prev = match st.workers.remove(&me).and_then(|s| s.handle) {
            Some(h) => st.last_exiting.replace(h),
            None => None,
        };
        // One thread fewer: if that leaves jobs or spares short, ask the
        // manager (a job queued while we were leaving must still run).
        let wake_manager = !st.manager_notified && self.deficit(&st) > 0;
        if wake_manager {
            st.manager_notified = true;
        }
        // `spawned` may still deliver our handle: it will see no slot.
        self.notify_done(st);
        if wake_manager {
            self.manager_cv.notify_one();
        }
        prev
    }

    /// The manager's wait: returns the slot of a worker to create, or
    /// `None` once the pool is shut down. While more than `min_idle`
    /// workers are parked it waits with `idle_timeout` and reaps, at each
    /// timeout, the workers that stayed idle through the whole window.
    pub(crate) fn manager_next(&self) -> Option<u64> {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return None;
            }
            if st.closing {
                st.grow = 0; // no spares for a pool that is closing
            }
            if self.deficit(&st) > 0 || st.grow > 0 {
                st.grow = st.grow.saturating_sub(1);
                if st.threads < self.cfg.max_threads {
                    return Some(self.reserve_locked(&mut st, false));
                }
                st.grow = 0;
                continue;
            }
            st.manager_notified = false;
            if st.idle <= self.cfg.min_idle {
                st.idle_timer = false;
                st = sync::wait(&self.manager_cv, st);
                continue;
            }
            st.idle_timer = true;
            st.idle_low = st.idle;
            let (g, timed_out) =
                sync::wait_timeout(&self.st, &self.manager_cv, st, self.cfg.idle_timeout);
            st = g;
            if timed_out {
                st = self.reap_idle(st);
            }
        }
    }

    /// Hands exit tickets to the workers that stayed parked through the
    /// idle window (`idle_low` beyond `min_idle`), and wakes them.
    fn reap_idle<'a>(&'a self, mut st: MutexGuard<'a, State<J>>) -> MutexGuard<'a, State<J>> {
        if st.shutdown || st.closing {
            return st;
        }
        let excess = st.idle_low.min(st.idle).saturating_sub(self.cfg.min_idle);
        if excess == 0 {
            return st;
        }
        st.idle -= excess;
        st.reap += excess;
        st.idle_low = st.idle;
        drop(st);
        for _ in 0..excess {
            self.worker_cv.notify_one();
        }
        self.lock()
    }

    /// The manager's back-off after a refused creation; ends early on shutdown.
    pub(crate) fn manager_pause(&self, d: Duration) {
        let st = self.lock();
        if !st.shutdown {
            let _ = sync::wait_timeout(&self.st, &self.manager_cv, st, d);
        }
    }

    /// Removes a queued job (cancellation); whether it was still queued.
    pub(crate) fn remove_queued(&self, id: u64) -> bool {
        let mut st = self.lock();
        let Some(pos) = st.queue.iter().position(|j| j.id() == id) else {
            return false;
        };
        let job = st.queue.remove(pos);
        st.counters.cancelled += 1;
        self.notify_done(st);
        sync::contain("the drop of a cancelled job", move || drop(job));
        true
    }

    /// Starts a shutdown: refuses submissions, takes the queue, and returns
    /// the taken jobs and the stop sources of running jobs.
    pub(crate) fn begin_shutdown(&self) -> (Vec<J>, Vec<StopSource>) {
        let mut st = self.lock();
        st.shutdown = true;
        let jobs: Vec<J> = st.queue.drain(..).collect();
        st.counters.cancelled += jobs.len() as u64;
        let stops = st
            .workers
            .values()
            .filter_map(|w| w.current.as_ref()?.stop.clone())
            .collect();
        self.notify_done(st);
        self.worker_cv.notify_all();
        self.manager_cv.notify_all();
        (jobs, stops)
    }

    /// Stops accepting; queued jobs still run, then workers exit.
    pub(crate) fn begin_close(&self) {
        self.lock().closing = true;
        self.worker_cv.notify_all();
        self.manager_cv.notify_all();
    }

    /// Waits until `done(state)` holds or `deadline` passes; returns whether it holds.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        done: impl Fn(&State<J>) -> bool,
    ) -> bool {
        let mut st = self.lock();
        if done(&st) {
            return true;
        }
        // Counted while waiting, so state changes notify `done_cv`.
        st.done_waiters += 1;
        let (mut st, ok) = sync::wait_until(&self.st, &self.done_cv, st, deadline, |st| done(st));
        st.done_waiters -= 1;
        ok
    }

    /// Takes the pending exit handle (for the final join).
    pub(crate) fn take_last_exiting(&self) -> Option<JoinHandle<()>> {
        self.lock().last_exiting.take()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{thread, Arc};

    impl QueuedJob for u64 {
        fn id(&self) -> u64 {
            *self
        }
        fn stop_source(&self) -> Option<StopSource> {
            None
        }
    }

    fn core(min_idle: usize, max_threads: usize) -> Arc<Core<u64>> {
        Arc::new(Core::new(Config {
            min_idle,
            max_threads,
            idle_timeout: Duration::from_secs(1),
            queue: Queue::Unbounded,
        }))
    }

    /// A worker that runs jobs until `jobs` of them ran or it exits.
    fn worker(core: Arc<Core<u64>>, no: u64, jobs: usize) -> (usize, bool) {
        let mut ran = 0;
        let mut first = true;
        loop {
            match core.next(no, first, |_| {}) {
                Next::Run(_) => {
                    ran += 1;
                    core.report(Outcome::Completed, &mut || {});
                    if ran == jobs {
                        // Leave as if stopped (the thread stays counted).
                        return (ran, false);
                    }
                }
                Next::Exit => {
                    core.exit(no, false, false);
                    return (ran, true);
                }
            }
            first = false;
        }
    }

    /// Issue 10 item 2: submitters racing on an empty `max_threads(1)`
    /// pool. The cap is checked and the thread reserved in the same
    /// critical section as the push: exactly one submitter is told to
    /// create a worker, and `threads` never exceeds 1.
    #[test]
    fn loom_cap_reservation_racing_submitters() {
        for queue in [Queue::Unbounded, Queue::None] {
            loom::model(move || {
                let c = Arc::new(Core::new(Config {
                    min_idle: 0,
                    max_threads: 1,
                    idle_timeout: Duration::from_secs(1),
                    queue,
                }));
                let c2 = c.clone();
                let other = thread::spawn(move || c2.submit(1).map_err(|(_, r)| r));
                let mine = c.submit(2).map_err(|(_, r)| r);
                let theirs = other.join().unwrap();
                let creators = [mine, theirs]
                    .iter()
                    .filter(|r| matches!(r, Ok(Submitted::CreateWorker(_))))
                    .count();
                assert_eq!(creators, 1, "{mine:?} {theirs:?}");
                let st = c.lock();
                assert_eq!(st.threads, 1);
                if queue == Queue::None {
                    // Nothing waits without a worker on its way.
                    assert!(
                        [mine, theirs].contains(&Err(Refusal::AtCapacity)),
                        "{mine:?} {theirs:?}"
                    );
                    assert_eq!(st.queue.len(), 1);
                }
            });
        }
    }

    /// Issue 10 item 8: a job on a worker created for it (its first
    /// `next`) waits for the pool to go idle from inside while another job
    /// comes and goes on a second worker: it waits for the other job only,
    /// and does not deadlock on itself.
    #[test]
    fn loom_fresh_worker_waits_idle_from_inside() {
        loom::model(|| {
            let c = core(0, 2);
            let Ok(Submitted::CreateWorker(a)) = c.submit(1) else {
                panic!("an empty pool asks the submitter for a worker");
            };
            let c2 = c.clone();
            let fresh = thread::spawn(move || {
                let Next::Run(_) = c2.next(a, true, |_| {}) else {
                    panic!("the fresh worker takes the job it was created for");
                };
                // The job: wait for every job but itself.
                assert!(c2.wait_until(None, |st| st.busy <= 1 && st.queue.is_empty()));
                c2.report(Outcome::Completed, &mut || {});
            });
            // The second job gets a worker from the manager (played here).
            let b = match c.submit(2) {
                Ok(Submitted::CreateWorker(b)) => b,
                Ok(Submitted::Queued) => c.manager_next().expect("a worker for the queued job"),
                Err((_, r)) => panic!("refused: {r:?}"),
            };
            worker(c.clone(), b, 1);
            fresh.join().unwrap();
            let st = c.lock();
            assert_eq!(st.busy, 0);
        });
    }

    /// tokio loom_blocking "a job submitted while the only worker goes
    /// idle still runs": the submit races the worker's check-then-park.
    /// A lost job shows up as a deadlock, which loom reports.
    #[test]
    fn loom_spawn_vs_worker_going_idle() {
        loom::model(|| {
            let c = core(1, 1);
            let no = c.reserve();
            let c2 = c.clone();
            let w = thread::spawn(move || worker(c2, no, 1));
            c.submit(7).unwrap_or_else(|_| panic!("refused"));
            let (ran, _) = w.join().unwrap();
            assert_eq!(ran, 1);
            assert_eq!(c.lock().counters.completed, 1);
        });
    }

    /// Spawn racing shutdown always resolves: either refused, or queued and
    /// then taken by shutdown, or run. Never left in the queue.
    #[test]
    fn loom_spawn_vs_shutdown() {
        loom::model(|| {
            let c = core(1, 1);
            let no = c.reserve();
            let c2 = c.clone();
            let w = thread::spawn(move || worker(c2, no, usize::MAX));
            let c3 = c.clone();
            let s = thread::spawn(move || c3.submit(1).map(|_| ()).map_err(|(_, r)| r));
            let (taken, _) = c.begin_shutdown();
            let submitted = s.join().unwrap();
            let (ran, exited) = w.join().unwrap();
            assert!(exited);
            let st = c.lock();
            match submitted {
                Err(r) => assert_eq!(r, Refusal::ShutDown),
                Ok(()) => assert_eq!(taken.len() + ran, 1, "queued job vanished"),
            }
            assert!(st.queue.is_empty());
            assert_eq!(st.threads, 0);
        });
    }

    /// Idle reaping racing a new job: the manager's idle timer may fire at
    /// any point around a submit; the job still runs, and a reaped worker
    /// is never also handed the job.
    #[test]
    fn loom_idle_reap_vs_new_job() {
        reap_vs_new_job(2);
    }

    /// The same at `max_threads = 1`, where the submit cannot ask for a new
    /// thread: found by shuttle (a job queued while the only worker held a
    /// reap ticket was stranded). The reaped worker now runs it instead.
    #[test]
    fn loom_idle_reap_vs_new_job_at_max_threads() {
        reap_vs_new_job(1);
    }

    fn reap_vs_new_job(max_threads: usize) {
        loom::model(move || {
            let c = core(0, max_threads);
            let a = c.reserve();
            let c2 = c.clone();
            let wa = thread::spawn(move || worker(c2, a, 1));
            // Wait until the worker is parked, then race reap vs submit.
            loop {
                let mut st = c.lock();
                if st.idle == 1 {
                    // The manager took the parking's wake-up and is in its
                    // idle window (the reaper thread below is its timeout).
                    st.manager_notified = false;
                    st.idle_timer = true;
                    break;
                }
                drop(st);
                thread::yield_now();
            }
            let c3 = c.clone();
            let reaper = thread::spawn(move || {
                let mut st = c3.lock();
                st.idle_low = 1; // parked through a whole window
                drop(c3.reap_idle(st));
            });
            let submitted = c.submit(5).map_err(|(_, r)| r);
            reaper.join().unwrap();
            // Reaped and gone before the submit: the submitter creates a
            // worker for its job (an empty pool).
            let created = matches!(submitted, Ok(Submitted::CreateWorker(_)));
            let (ran, exited) = wa.join().unwrap();
            let st = c.lock();
            match submitted {
                Err(r) => panic!("refused: {r:?}"),
                Ok(_) if created => assert!(exited),
                Ok(_) if exited => {
                    assert_eq!(ran, 0);
                    assert_eq!(st.queue.len(), 1, "job lost with the reaped worker");
                    assert!(
                        st.manager_notified && c.deficit(&st) > 0,
                        "nobody will create a worker for it"
                    );
                }
                Ok(_) => assert_eq!(ran, 1),
            }
        });
    }

    /// `wait_until` (wait_idle, shutdown) racing the worker that finishes
    /// the last job: `done_cv` is only notified when a waiter is counted,
    /// so a waiter that registers late must still see the idle state.
    #[test]
    fn loom_wait_idle_vs_job_finishing() {
        loom::model(|| {
            let c = core(0, 1);
            let no = c.reserve();
            c.submit(3).unwrap_or_else(|_| panic!("refused"));
            let c2 = c.clone();
            let w = thread::spawn(move || {
                let Next::Run(_) = c2.next(no, true, |_| {}) else {
                    panic!("no job");
                };
                c2.report(Outcome::Completed, &mut || {});
            });
            assert!(c.wait_until(None, |st| st.busy == 0 && st.queue.is_empty()));
            w.join().unwrap();
        });
    }
}
