//! The dispatch protocol of README.md, independent of threads and jobs so
//! that loom can check it: queues of `J`, counts, a condvar per worker and
//! two for the manager and the waiters.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::ThreadRecord;
use crate::stop::StopSource;
use crate::sync::{self, AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// What the protocol needs to know of a queued job.
pub(crate) trait QueuedJob: Send {
    fn id(&self) -> u64;
    fn stop_source(&self) -> Option<StopSource>;
    /// How the job expects to behave (a hint given at spawn).
    fn kind(&self) -> Kind {
        Kind::Auto
    }
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
/// let pool = Pool::builder().max_threads(1).queue(Queue::Handoff).build().unwrap();
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
    /// Nothing waits: every job is handed to a parked worker or a new
    /// thread (Java's `SynchronousQueue`), and at `max_threads` it is
    /// refused with [`SpawnError::AtCapacity`](crate::SpawnError::AtCapacity).
    /// (Named `None` before 0.2; renamed so it does not read as
    /// `Option::None`.)
    Handoff,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) min_idle: usize,
    /// Parked workers beyond this exit at once (XPC's `idle_limit`).
    pub(crate) max_idle: usize,
    pub(crate) max_threads: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) queue: Queue,
    /// Jobs running at once (not blocked) the pool aims for; `None`: one
    /// thread per concurrent job (no concurrency management).
    pub(crate) target: Option<usize>,
}

impl Config {
    /// The models' pool (loom, shuttle): an unbounded queue, no idle cap.
    #[cfg(all(test, any(loom, shuttle)))]
    pub(crate) fn for_models(min_idle: usize, max_threads: usize, target: Option<usize>) -> Config {
        Config {
            min_idle,
            max_threads,
            idle_timeout: Duration::from_secs(1),
            queue: Queue::Unbounded,
            max_idle: usize::MAX,
            target,
        }
    }
}

/// The job a worker runs right now.
pub(crate) struct Current {
    pub(crate) job: u64,
    pub(crate) stop: Option<StopSource>,
    pub(crate) started: Instant,
    /// The job counts against the concurrency target (not `MayBlock`).
    pub(crate) counted: bool,
    /// The job may be compensated by the monitor (not `Cpu`).
    pub(crate) watched: bool,
    /// Depth of library waits and `blocking` sections the job is in.
    pub(crate) blocked: u32,
    /// The monitor found it blocked (or hogging a CPU) and no longer
    /// counts it as running.
    pub(crate) compensated: bool,
}

impl Current {
    /// Whether the job counts in `State::running` now.
    fn in_running(&self) -> bool {
        self.counted && self.blocked == 0 && !self.compensated
    }
}

/// Worker numbers are small, distinct, increasing integers we assign: the
/// map of workers hashes them with one multiplication (Fibonacci hashing,
/// which also spreads them into the top bits the table's probing uses)
/// instead of SipHash, which showed as 4 % of a tiny job's cost for the
/// several lookups per job.
#[derive(Default)]
pub(crate) struct WorkerNoHasher(u64);

impl Hasher for WorkerNoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Why a parked worker was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    /// Claimed for a job by a submitter (or a blocking job, or the monitor).
    Job,
    /// Reaped by the manager's idle timer.
    Reap,
}

/// One worker thread as the pool knows it.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    /// `None` until thread creation returned; dropped (detached) for stragglers.
    pub(crate) handle: Option<JoinHandle<()>>,
    pub(crate) rec: Option<Arc<ThreadRecord>>,
    pub(crate) current: Option<Current>,
    /// The worker's own parking primitive (waits with the pool lock): a
    /// wake-up reaches exactly the worker it is meant for.
    cv: Arc<Condvar>,
    /// Granted while parked, consumed by the worker.
    ticket: Option<Ticket>,
    /// Reserved by a submitter for its job and not started yet (counted in
    /// `State::coming`): it holds a promise.
    coming: bool,
    /// Has made its first `next` call.
    started: bool,
    /// Its last job came after a park (not straight after another job):
    /// it does not spin before parking again (a lone job is not a burst).
    after_park: bool,
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
    /// Jobs the monitor found blocked outside the library's waits.
    pub(crate) compensated_blocked: u64,
    /// Jobs the monitor found hogging a CPU past the threshold.
    pub(crate) compensated_hogs: u64,
}

pub(crate) struct State<J> {
    /// Jobs that count against the target, oldest first.
    pub(crate) queue: VecDeque<J>,
    /// `MayBlock` jobs: taken first, whatever the target says.
    pub(crate) urgent: VecDeque<J>,
    /// Parked workers, most recently parked last: a wake-up takes the
    /// last (the hot thread, LIFO as cmwq, Go, .NET, IOCP), the idle
    /// reaper takes the first (the coldest).
    pub(crate) idle_stack: Vec<u64>,
    /// `Job` tickets granted to parked workers and not yet consumed
    /// (workers on their way to the queue: libuv's `nwaking`).
    pub(crate) notify: usize,
    /// Lowest `idle` since the manager's current idle window began.
    idle_low: usize,
    /// When the manager's current idle window ends (none runs: `None`).
    idle_deadline: Option<Instant>,
    pub(crate) threads: usize,
    pub(crate) spawning: usize,
    /// Of `spawning`, the threads a submitter reserved for its job
    /// (`Submitted::CreateWorker`; if the OS refuses one, its job is taken
    /// back out). With `notify`, these are the pool's *promises*: each will
    /// take a queued job when it gets there, whatever the target says (a
    /// woken worker may briefly exceed the target, as in cmwq). Only
    /// promises count as "a worker on its way" for the queue bound, and
    /// only room beyond them may be taken by a worker without one.
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
    /// Workers in a counted job that is not blocked (cmwq's `nr_running`).
    pub(crate) running: usize,
    /// Workers that found nothing and poll `queued_hint` for a moment
    /// before parking (Go's spinning Ms): a submit does not wake a parked
    /// worker for a job one of them will take.
    spinning: usize,
    /// Extra running jobs the liveness backstop allows beyond the target
    /// while work waits (reset when the queue empties).
    pub(crate) extra: usize,
    /// When a worker last took a job (for the liveness backstop).
    pub(crate) last_start: Instant,
    pub(crate) shutdown: bool,
    pub(crate) closing: bool,
    manager_notified: bool,
    /// Threads blocked in `wait_until`: `done_cv` is notified only if any.
    done_waiters: usize,
    next_worker: u64,
    pub(crate) workers: HashMap<u64, WorkerSlot, BuildHasherDefault<WorkerNoHasher>>,
    last_exiting: Option<JoinHandle<()>>,
    pub(crate) counters: Counters,
}

impl<J> State<J> {
    /// Parked workers nobody has claimed.
    pub(crate) fn idle(&self) -> usize {
        self.idle_stack.len()
    }
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
    /// bound for the manager, a finishing worker, or room under the target.
    Queued,
    /// Queued, with worker slot `no` reserved for it: the caller creates
    /// that thread now, and on failure calls `withdraw`.
    CreateWorker(u64),
    /// Queued behind a full target: it waits for a running job to end or
    /// block (the caller makes sure the monitor watches).
    Waiting,
}

/// How a submitted job expects to behave (README: "Concurrency management").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Kind {
    /// Counted against the target; compensated when found blocked.
    #[default]
    Auto,
    /// Gets a thread at once and never counts against the target.
    MayBlock,
    /// Counted, and never compensated by the monitor.
    Cpu,
}

/// How a worker's job ended.
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

/// Wake-ups decided under the lock, issued after it is released.
#[derive(Default)]
#[must_use]
struct Wakes {
    workers: Vec<Arc<Condvar>>,
    manager: bool,
}

/// Polls of a worker that found no job before it parks, the last
/// `YIELD_ROUNDS` of them yielding the CPU (crossbeam's `Backoff`: spin
/// 2^i up to 64, then yield): ~5-20 µs on the development machine.
#[cfg(not(any(loom, shuttle)))]
const SPIN_ROUNDS: u32 = 16;
#[cfg(not(any(loom, shuttle)))]
const YIELD_ROUNDS: u32 = 6;

/// What the manager should do for a pool now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManagerStep {
    /// Create worker `no` (reserved).
    Create(u64),
    /// Nothing to do until woken, or until this instant (an idle window
    /// ends).
    Wait(Option<Instant>),
    /// The pool is shut down.
    Exit,
}

/// How a pool wakes the process-wide manager.
pub(crate) type Notifier = Box<dyn Fn() + Send + Sync>;

pub(crate) struct Core<J> {
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

impl<J: QueuedJob> Core<J> {
    /// A core whose manager waits on the core's own condvar (the models).
    #[cfg(all(test, any(loom, shuttle)))]
    pub(crate) fn new(cfg: Config) -> Core<J> {
        Core::with_notifier(cfg, None)
    }

    /// A core whose manager is woken through `notifier`.
    pub(crate) fn with_notifier(cfg: Config, notifier: Option<Notifier>) -> Core<J> {
        Core {
            notifier,
            st: Mutex::new(State {
                queue: VecDeque::new(),
                urgent: VecDeque::new(),
                idle_stack: Vec::new(),
                notify: 0,
                idle_low: 0,
                idle_deadline: None,
                threads: 0,
                spawning: 0,
                coming: 0,
                grow: 0,
                busy: 0,
                running: 0,
                spinning: 0,
                extra: 0,
                last_start: Instant::now(),
                shutdown: false,
                closing: false,
                manager_notified: false,
                done_waiters: 0,
                next_worker: 0,
                workers: HashMap::default(),
                last_exiting: None,
                counters: Counters::default(),
            }),
            saturation: AtomicBool::new(false),
            queued_hint: AtomicUsize::new(0),
            manager_cv: Condvar::new(),
            done_cv: Condvar::new(),
            cfg,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<J>> {
        sync::lock(&self.st)
    }

    /// Counted jobs that may start now without exceeding the target
    /// (unlimited without one).
    fn room(&self, st: &State<J>) -> usize {
        match self.cfg.target {
            None => usize::MAX,
            Some(t) => (t + st.extra).saturating_sub(st.running),
        }
    }

    /// Workers on their way to the queue that will take a job: woken ones
    /// and threads reserved for a job.
    fn promised(st: &State<J>) -> usize {
        st.notify + st.coming
    }

    /// Jobs a worker could take right now: every `MayBlock` job, and the
    /// counted ones the target leaves room for.
    fn runnable(&self, st: &State<J>) -> usize {
        st.urgent.len() + st.queue.len().min(self.room(st))
    }

    /// Threads the manager should create now (README: "deficit").
    fn deficit(&self, st: &State<J>) -> usize {
        if st.shutdown {
            return 0;
        }
        // (`spawning` below covers the reserved threads in `coming`.)
        let unserved = self.runnable(st).saturating_sub(st.notify + st.spinning);
        let spare_gap = if st.closing {
            0
        } else {
            self.cfg.min_idle.saturating_sub(st.idle())
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
            Queue::Handoff => Some(0),
        }
    }

    /// Claims the most recently parked worker for a job, if any.
    fn claim_idle(st: &mut State<J>, wakes: &mut Wakes) -> bool {
        let Some(no) = st.idle_stack.pop() else {
            return false;
        };
        st.idle_low = st.idle_low.min(st.idle_stack.len());
        let slot = st.workers.get_mut(&no).expect("a parked worker has a slot");
        debug_assert!(slot.ticket.is_none(), "a parked worker holds a ticket");
        slot.ticket = Some(Ticket::Job);
        st.notify += 1;
        wakes.workers.push(slot.cv.clone());
        true
    }

    /// Serves what can run now: claims parked workers for runnable jobs no
    /// woken worker will take, and asks the manager for threads when none
    /// is parked. Called wherever room or work appears.
    fn dispatch(&self, st: &mut State<J>, wakes: &mut Wakes) {
        self.queued_hint
            .store(st.queue.len() + st.urgent.len(), Ordering::Relaxed);
        while self.runnable(st) > Self::promised(st) + st.spinning {
            if !Self::claim_idle(st, wakes) {
                break;
            }
        }
        if !st.manager_notified && (st.grow > 0 || self.deficit(st) > 0) {
            st.manager_notified = true;
            wakes.manager = true;
        }
    }

    /// After a change that frees a place or a thread: serves what can run
    /// now, unlocks, and wakes whoever that concerns (workers, the
    /// manager, `wait_until` callers).
    fn serve_and_unlock(&self, mut st: MutexGuard<'_, State<J>>) {
        let mut wakes = Wakes::default();
        self.dispatch(&mut st, &mut wakes);
        let done = st.done_waiters > 0;
        self.wake(st, wakes);
        if done {
            self.done_cv.notify_all();
        }
    }

    /// Releases the lock, then issues the wake-ups.
    fn wake(&self, st: MutexGuard<'_, State<J>>, wakes: Wakes) {
        drop(st);
        for cv in wakes.workers {
            cv.notify_one();
        }
        if wakes.manager {
            self.notify_manager();
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

    /// Queues `job` and wakes a parked worker (and the manager if threads
    /// are wanted), after unlocking. The queue bound and `max_threads` are
    /// checked, and a thread reserved, in the same critical section as the
    /// push (README: "Dispatch").
    pub(crate) fn submit(&self, job: J) -> Result<Submitted, (J, Refusal)> {
        let kind = job.kind();
        let mut st = self.lock();
        if st.shutdown || st.closing {
            return Err((job, Refusal::ShutDown));
        }
        // Without a target every job is served at once: no need to keep
        // `MayBlock` jobs apart.
        let urgent = kind == Kind::MayBlock && self.cfg.target.is_some();
        let mut submitted = Submitted::Queued;
        // Would the job run at once on a parked worker? (The target's room
        // goes to the jobs ahead of it first, and to the woken workers.)
        let served_now = st.idle() > 0
            && (urgent || (st.queue.len() + 1).min(self.room(&st)) > Self::promised(&st));
        if !served_now {
            // Jobs with no worker on its way (a woken one, or one certain to
            // arrive), counting this one.
            let waiting = st.queue.len() + st.urgent.len() + 1;
            let unserved = waiting.saturating_sub(Self::promised(&st));
            let over = st.threads == 0 || self.wait_bound().is_some_and(|n| unserved > n);
            if over {
                // A thread for this job, if the cap (and the target, for a
                // counted job) allows one.
                let fits = urgent || (st.queue.len() + 1).min(self.room(&st)) > Self::promised(&st);
                if st.threads < self.cfg.max_threads && (fits || st.threads == 0) {
                    submitted = Submitted::CreateWorker(self.reserve_locked(&mut st, true));
                } else if self.cfg.queue == Queue::Handoff {
                    return Err((job, Refusal::AtCapacity));
                } else if self.wait_bound().is_some() {
                    return Err((job, Refusal::QueueFull));
                }
            }
        }
        if urgent {
            st.urgent.push_back(job);
        } else {
            st.queue.push_back(job);
        }
        st.counters.submitted += 1;
        let mut wakes = Wakes::default();
        self.dispatch(&mut st, &mut wakes);
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
        self.note_saturation(&st);
        self.wake(st, wakes);
        Ok(submitted)
    }

    /// Whether work waits for room under the target (the monitor watches
    /// such a pool).
    pub(crate) fn saturated(&self, st: &State<J>) -> bool {
        !st.shutdown && !st.queue.is_empty() && self.room(st) <= st.notify
    }

    /// Records, under the lock, that the pool may have become saturated.
    fn note_saturation(&self, st: &State<J>) {
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
        let job =
            Self::remove_from(&mut st.queue, id).or_else(|| Self::remove_from(&mut st.urgent, id));
        if job.is_some() {
            st.counters.submitted -= 1;
        }
        self.notify_done(st);
        job
    }

    fn remove_from(q: &mut VecDeque<J>, id: u64) -> Option<J> {
        let pos = q.iter().position(|j| j.id() == id)?;
        q.remove(pos)
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

    /// Changes worker `me`'s current job with `f`, keeping `running` equal
    /// to the number of jobs that count in it.
    fn update_current(st: &mut State<J>, me: u64, f: impl FnOnce(&mut Current)) {
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

    /// Counts how a worker's job ended, running `settle` (which stores the
    /// job's result) in the same critical section: once `join` returned,
    /// `stats()` includes the job, and once `wait_idle` returned, every job
    /// it waited for has its result. The worker stays this job's until its
    /// next `next` (a detached job's value is dropped on it meanwhile).
    ///
    /// With `take_next`, the same critical section hands the worker its
    /// next job if it may take one (cmwq's `keep_working`: one lock per job
    /// on a busy pool, no wake-up); the worker runs it after finishing this
    /// one's hand-off (waking the joiner, dropping a detached value).
    /// Without, or if there is none, the worker keeps its place in
    /// `running` until its next `next` (a submitter must not take that
    /// room and make the finishing worker park).
    pub(crate) fn report(
        &self,
        me: u64,
        outcome: Outcome,
        settle: &mut dyn FnMut(),
        take_next: bool,
    ) -> Option<J> {
        let mut st = self.lock();
        settle();
        debug_assert!(st.busy > 0, "busy underflow");
        st.busy -= 1;
        match outcome {
            Outcome::Completed => st.counters.completed += 1,
            Outcome::Panicked => st.counters.panicked += 1,
            Outcome::Skipped => st.counters.cancelled += 1,
        }
        let next = if take_next {
            let held = self.release_current(&mut st, me);
            let next = self.take(&mut st, me, held);
            if next.is_some() {
                if let Some(w) = st.workers.get_mut(&me) {
                    w.after_park = false; // in a run of jobs
                }
            }
            if next.is_none() && held {
                // Not taken: the place this worker held goes to whoever
                // may use it.
                self.serve_and_unlock(st);
                return None;
            }
            next
        } else {
            // The monitor leaves the finished job alone.
            if let Some(c) = st.workers.get_mut(&me).and_then(|w| w.current.as_mut()) {
                c.watched = false;
            }
            None
        };
        // Someone waits for a count to drop (wait_idle, possibly from
        // inside a job, so not only for busy == 0).
        self.notify_done(st);
        next
    }

    /// A worker's short poll of `queued_hint` before it parks (a few µs:
    /// spin, then yield; none under the models, which explore the unlocked
    /// window itself).
    fn spin(&self) {
        #[cfg(not(any(loom, shuttle)))]
        for i in 0..SPIN_ROUNDS {
            if self.queued_hint.load(Ordering::Relaxed) > 0 {
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

    /// Ends worker `me`'s current job's bookkeeping; whether the job held a
    /// place in `running` (now released, for the caller to pass on).
    fn release_current(&self, st: &mut State<J>, me: u64) -> bool {
        let mut held = false;
        Self::update_current(st, me, |c| {
            held = c.in_running();
            c.counted = false;
        });
        if let Some(slot) = st.workers.get_mut(&me) {
            slot.current = None;
        }
        held
    }

    /// Worker `me`'s job enters (`true`) or leaves (`false`) a wait that
    /// really blocks (cmwq's `wq_worker_sleeping` / `wq_worker_running`).
    /// Entering makes room under the target: a queued job gets a parked
    /// worker or a new thread at once.
    pub(crate) fn blocking(&self, me: u64, enter: bool) {
        let mut st = self.lock();
        Self::update_current(&mut st, me, |c| {
            if enter {
                c.blocked += 1;
            } else {
                c.blocked = c.blocked.saturating_sub(1);
            }
        });
        let mut wakes = Wakes::default();
        if enter {
            self.dispatch(&mut st, &mut wakes);
        } else {
            self.note_saturation(&st);
        }
        self.wake(st, wakes);
    }

    /// Takes the next job worker `me` may run now: `MayBlock` jobs first,
    /// then a counted one if the target leaves room (a worker finishing a
    /// job takes the next one without a wake-up: cmwq's `keep_working`).
    ///
    /// A worker holding a promise (woken for a job, or created for one)
    /// takes a queued job whatever the target says; one without may use
    /// only room nobody was promised.
    fn take(&self, st: &mut State<J>, me: u64, promised: bool) -> Option<J> {
        let (job, kind) = if let Some(job) = st.urgent.pop_front() {
            (job, Kind::MayBlock)
        } else if !st.queue.is_empty() && (promised || self.room(st) > Self::promised(st)) {
            let job = st.queue.pop_front()?;
            let kind = job.kind();
            (job, kind)
        } else {
            return None;
        };
        if st.queue.is_empty() {
            st.extra = 0; // the backstop's allowance ends with the backlog
        }
        st.busy += 1;
        let now = Instant::now();
        st.last_start = now;
        let counted = kind != Kind::MayBlock;
        if counted {
            st.running += 1;
        }
        let current = Current {
            job: job.id(),
            stop: job.stop_source(),
            started: now,
            counted,
            watched: kind == Kind::Auto,
            blocked: 0,
            compensated: false,
        };
        if let Some(slot) = st.workers.get_mut(&me) {
            slot.current = Some(current);
        }
        self.note_saturation(st);
        Some(job)
    }

    /// The worker loop's one call: take the next job, parking while there
    /// is none it may run. `first` on the worker's first call; `set_idle`
    /// tells the caller when the worker parks and unparks (for the
    /// registry).
    pub(crate) fn next(&self, me: u64, first: bool, set_idle: impl Fn(bool)) -> Next<J> {
        let mut st = self.lock();
        let mut promised = if first {
            let coming = st.workers.get(&me).is_some_and(|w| w.coming);
            Self::started_locked(&mut st, me);
            coming
        } else {
            // The finished job's place in `running` passes to the next job
            // this worker takes (or is given up if it parks).
            self.release_current(&mut st, me)
        };
        let mut spun = false;
        let mut parked = false;
        loop {
            if let Some(job) = self.take(&mut st, me, promised) {
                self.queued_hint
                    .store(st.queue.len() + st.urgent.len(), Ordering::Relaxed);
                if let Some(w) = st.workers.get_mut(&me) {
                    w.after_park = parked;
                }
                return Next::Run(job);
            }
            promised = false; // nothing to take: the promise lapses
            if st.shutdown || st.closing {
                return Next::Exit;
            }
            // At most one spinner, only while CPUs are left (Go keeps
            // spinning Ms to half the busy Ps: on a small machine more
            // spinners only take the CPU from the submitters), and only in
            // a run of jobs: after a lone job spinning delays the park and
            // measurably slows the next dispatch's wake-up.
            let in_a_run = st.workers.get(&me).is_some_and(|w| !w.after_park);
            if !spun
                && in_a_run
                && st.spinning == 0
                && st.running + 1 < self.cfg.target.unwrap_or(usize::MAX)
            {
                // Poll for a moment before parking: a job that comes now is
                // taken without a wake-up. Submits see `spinning` and leave
                // the job to us; we look again under the lock before
                // parking, so a job queued meanwhile is never missed.
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
            set_idle(true);
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
            // a timer on every park and measurably slows the wake-up
            // (README: "Idle timeout").
            let cv = st.workers[&me].cv.clone();
            loop {
                st = sync::wait(&cv, st);
                let slot = st.workers.get_mut(&me).expect("a parked worker has a slot");
                match slot.ticket.take() {
                    // Claimed (already off the idle stack): look again.
                    Some(Ticket::Job) => {
                        st.notify -= 1;
                        promised = true;
                        break;
                    }
                    // Reaped (already off the idle stack).
                    Some(Ticket::Reap) => {
                        if self.runnable(&st) > Self::promised(&st) {
                            // A job came in that no claimed worker will
                            // take (its submitter found no parked worker
                            // because the reaper had taken us): run it.
                            promised = true;
                            break;
                        }
                        set_idle(false);
                        return Next::Exit;
                    }
                    None if st.shutdown || st.closing => {
                        st.idle_stack.retain(|&w| w != me);
                        break;
                    }
                    None => {} // spurious
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
            Self::update_current(&mut st, me, |c| c.counted = false);
            st.busy -= 1;
            st.counters.panicked += 1;
        }
        // Never parked when it leaves, but be sure.
        st.idle_stack.retain(|&w| w != me);
        let prev = match st.workers.remove(&me).and_then(|s| s.handle) {
            Some(h) => st.last_exiting.replace(h),
            None => None,
        };
        // One thread fewer: if that leaves jobs or spares short, ask the
        // manager (a job queued while we were leaving must still run).
        // `spawned` may still deliver our handle: it will see no slot.
        self.serve_and_unlock(st);
        prev
    }

    /// Removes a queued job (cancellation); whether it was still queued.
    pub(crate) fn remove_queued(&self, id: u64) -> bool {
        let mut st = self.lock();
        let Some(job) =
            Self::remove_from(&mut st.queue, id).or_else(|| Self::remove_from(&mut st.urgent, id))
        else {
            return false;
        };
        st.counters.cancelled += 1;
        self.notify_done(st);
        sync::contain("the drop of a cancelled job", move || drop(job));
        true
    }

    /// Every parked worker's condvar (to wake them all).
    fn all_parked(st: &State<J>) -> Vec<Arc<Condvar>> {
        st.idle_stack
            .iter()
            .map(|no| st.workers[no].cv.clone())
            .collect()
    }

    /// Starts a shutdown: refuses submissions, takes the queue, and returns
    /// the taken jobs and the stop sources of running jobs.
    pub(crate) fn begin_shutdown(&self) -> (Vec<J>, Vec<StopSource>) {
        let mut st = self.lock();
        st.shutdown = true;
        let mut jobs: Vec<J> = st.urgent.drain(..).collect();
        jobs.extend(st.queue.drain(..));
        st.counters.cancelled += jobs.len() as u64;
        let stops = st
            .workers
            .values()
            .filter_map(|w| w.current.as_ref()?.stop.clone())
            .collect();
        let parked = Self::all_parked(&st);
        self.notify_done(st);
        for cv in parked {
            cv.notify_one();
        }
        self.notify_manager();
        (jobs, stops)
    }

    /// Stops accepting; queued jobs still run, then workers exit.
    pub(crate) fn begin_close(&self) {
        let mut st = self.lock();
        st.closing = true;
        let parked = Self::all_parked(&st);
        drop(st);
        for cv in parked {
            cv.notify_one();
        }
        self.notify_manager();
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

#[path = "core_manager.rs"]
mod manager_side;
#[path = "core_monitor.rs"]
mod monitor_side;

#[cfg(all(test, loom))]
#[path = "core_loom.rs"]
mod loom_tests;
