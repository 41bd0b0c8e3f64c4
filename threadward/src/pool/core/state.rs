//! The pool's state (README.md: "State") and its identities
//! (README.md: "Invariants"), checked at every unlock in debug, loom and
//! shuttle builds.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::JobQueue;
use crate::record::ThreadRecord;
use crate::stop::{HasStop, StopSource};
use crate::sync::Condvar;

/// How many jobs may wait in a pool with no worker on its way to them.
///
/// A job has a worker on its way when a parked worker was woken for it or
/// a thread is being created for it. With `Bounded(n)` and `Handoff`, a job
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
    Handoff,
}

/// How a job expects to behave, given at spawn
/// ([`Pool::spawn_hinted`](crate::Pool::spawn_hinted)).
///
/// # Examples
///
/// ```
/// use threadward::{JobHint, Pool};
///
/// let pool = Pool::builder().build().unwrap();
/// let job = pool.spawn_hinted(JobHint::MayBlock, |_| std::fs::metadata("/")).unwrap();
/// assert!(job.join().unwrap().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JobHint {
    /// Counted against the concurrency target; a job found blocked (or
    /// hogging a CPU) by the monitor stops counting.
    #[default]
    Auto,
    /// Expected to block: gets a thread at once and never counts against
    /// the target.
    MayBlock,
    /// CPU-bound: counted, and never compensated by the monitor.
    Cpu,
}

impl JobHint {
    /// The class of promise a worker woken for such a job holds.
    pub(crate) fn class(self) -> Class {
        match self {
            JobHint::MayBlock => Class::Urgent,
            JobHint::Auto | JobHint::Cpu => Class::Counted,
        }
    }
}

/// What a job waits in, and what a promise is for: a counted job (in
/// `queue`, started only with room under the target) or a `MayBlock` one
/// (in `urgent`, started at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Counted,
    Urgent,
}

/// A count per [`Class`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PerClass {
    pub(crate) counted: usize,
    pub(crate) urgent: usize,
}

impl PerClass {
    pub(crate) fn get(&self, c: Class) -> usize {
        match c {
            Class::Counted => self.counted,
            Class::Urgent => self.urgent,
        }
    }
    pub(crate) fn get_mut(&mut self, c: Class) -> &mut usize {
        match c {
            Class::Counted => &mut self.counted,
            Class::Urgent => &mut self.urgent,
        }
    }
    pub(crate) fn total(&self) -> usize {
        self.counted + self.urgent
    }
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
    /// How long jobs may wait for a thread at `max_threads`, with none
    /// free and none on its way, before the pool warns of a stall.
    pub(crate) stall_after: Duration,
    /// A job running (or blocked) this long is reported by the watchdog.
    pub(crate) watchdog_after: Duration,
    /// Learn which kinds of job block (a pool with a target and an
    /// unbounded queue only).
    pub(crate) learn: bool,
    /// Workers leaving a shut-down pool that exit at once (the CPUs):
    /// each waits for the exit of the one that left this many before it.
    pub(crate) exit_window: usize,
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
            exit_window: 1,
            stall_after: Duration::from_secs(1),
            watchdog_after: Duration::from_secs(30),
            learn: false,
        }
    }

    /// The most jobs that may wait with no worker on their way, if the
    /// queue policy bounds them.
    pub(crate) fn wait_bound(&self) -> Option<usize> {
        match self.queue {
            Queue::Unbounded => None,
            Queue::Bounded(n) => Some(n),
            Queue::Handoff => Some(0),
        }
    }
}

/// The job a worker runs right now.
pub(crate) struct Current {
    pub(crate) job: u64,
    /// The job's stop state, reached without keeping the job alive.
    pub(crate) stop: Option<std::sync::Weak<dyn HasStop>>,
    pub(crate) started: Instant,
    pub(crate) hint: JobHint,
    /// Depth of library waits and `blocking` sections the job is in.
    pub(crate) blocked: u32,
    /// The monitor found it blocked (or hogging a CPU) and no longer
    /// counts it as running.
    pub(crate) compensated: bool,
    /// The watchdog reported it (once per job).
    pub(crate) overdue: bool,
    /// Its kind (learned hints), if it has one.
    pub(crate) kind: Option<super::learn::KindKey>,
    /// It runs as `MayBlock` because its kind was learned to block.
    pub(crate) learned: bool,
    /// The monitor found it blocked (its kind's run blocked).
    pub(crate) blocked_seen: bool,
    /// Its compensation now is for hogging a CPU (never re-counted).
    pub(crate) hog: bool,
}

impl Current {
    /// Whether the job counts in `State::running` now.
    pub(crate) fn in_running(&self) -> bool {
        self.hint != JobHint::MayBlock && self.blocked == 0 && !self.compensated
    }
    /// The job's stop state, made now if the job made none. Called under
    /// the pool lock only: while the job is current its worker holds it,
    /// so the reference taken here is never the last one (a detached
    /// job's value is never dropped by this).
    pub(crate) fn stop_source(&self) -> Option<StopSource> {
        let job = self.stop.as_ref()?.upgrade()?;
        let source = job.stop().source().clone();
        drop(job);
        Some(source)
    }
    /// Whether the job's stop was requested (makes no stop state).
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
            .is_some_and(|job| job.stop().requested())
    }
    /// Whether the monitor may compensate it.
    pub(crate) fn watched(&self) -> bool {
        self.hint == JobHint::Auto
    }
}

/// A job whose closure returned, while its worker still runs its user code
/// (the waker, the drop of a detached value): kept so a shutdown report
/// names it (README.md: "Invariants", I6).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finishing {
    pub(crate) job: u64,
    pub(crate) started: Instant,
}

/// Worker numbers are small, distinct, increasing integers we assign: the
/// map of workers hashes them with one multiplication (Fibonacci hashing)
/// instead of SipHash, which showed as 4 % of a tiny job's cost.
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
pub(crate) enum Ticket {
    /// Claimed for a job of this class (a promise, counted in `notify`).
    Job(Class),
    /// Reaped by the manager's idle timer.
    Reap,
}

/// A thread's join handle, whichever thread type made it (the pool's
/// workers, `pool::worker::OsThread`; loom's and shuttle's threads in the
/// models, so the models run the same exit-and-join protocol).
pub(crate) trait Joinable: Send {
    /// Waits for the thread's exit to end.
    fn join(self: Box<Self>);
    /// Whether the OS thread is gone, so `join` returns at once. Only the
    /// thread that left joins without asking (it joins its predecessor);
    /// the manager, a submitter and a shutdown ask first: a job's
    /// thread-local destructor may block a thread's exit for ever, and
    /// must not block them.
    fn has_ended(&self) -> bool;
    /// Waits at most `timeout` for the thread's exit to end; whether it
    /// did (then `join` returns at once). Where the OS cannot wait for one
    /// thread's end, it only asks (`has_ended`).
    fn wait_ended(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        self.has_ended()
    }
}

#[cfg(any(loom, shuttle))]
impl Joinable for crate::sync::thread::JoinHandle<()> {
    fn join(self: Box<Self>) {
        let _ = crate::sync::thread::JoinHandle::join(*self);
    }
    fn has_ended(&self) -> bool {
        true // the models have no time: a join is the wait
    }
}

/// A thread that left the pool, to be joined.
pub(crate) type ExitHandle = Box<dyn Joinable>;

/// Where a worker's join handle is.
#[derive(Default)]
pub(crate) enum Handle {
    /// Thread creation has not returned yet.
    #[default]
    Pending,
    Held(ExitHandle),
    /// Dropped by a shutdown (a straggler): nobody joins it.
    Detached,
}

/// One worker thread as the pool knows it.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    pub(crate) handle: Handle,
    pub(crate) rec: Option<Arc<ThreadRecord>>,
    pub(crate) current: Option<Current>,
    /// The previous job, while the worker may still run its user code.
    pub(crate) finishing: Option<Finishing>,
    /// The worker's own parking primitive (waits with the pool lock): a
    /// wake-up reaches exactly the worker it is meant for.
    pub(crate) cv: Arc<Condvar>,
    /// Granted while parked, consumed by the worker.
    pub(crate) ticket: Option<Ticket>,
    /// Reserved by a submitter for a job of this class and not started yet
    /// (counted in `State::coming`): it holds a promise.
    pub(crate) coming: Option<Class>,
    /// Its last job came after a park (not straight after another job):
    /// it does not spin before parking again (a lone job is not a burst).
    pub(crate) after_park: bool,
}

impl WorkerSlot {
    /// The worker's job and thread id while the job's closure runs (the
    /// worker's record names the job): only then is the worker in user
    /// code, where a sleep is the job's own (README.md: "The monitor").
    pub(crate) fn in_closure(&self) -> Option<(&Current, i32)> {
        let c = self.current.as_ref()?;
        let rec = self.rec.as_ref()?;
        if rec.job() != Some(c.job) {
            return None;
        }
        Some((c, *rec.tid.get()?))
    }

    /// Whether job `job`'s closure may still run on this worker: its
    /// record names the job (the models' workers have no record: their
    /// current job counts). A worker that left the closure and waits for
    /// the pool lock to report is asleep, but not in the job's code.
    pub(crate) fn closure_runs(&self, job: u64) -> bool {
        match &self.rec {
            Some(rec) => rec.job() == Some(job),
            None => true,
        }
    }
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
    /// Compensated jobs the monitor saw running again and counted again.
    pub(crate) recounted: u64,
    /// Stall episodes warned about: jobs waited for a thread at
    /// `max_threads`, with none free or on its way, for `stall_after`.
    pub(crate) stalls: u64,
    /// Jobs taken by workers so far (the stall check's sign of progress).
    pub(crate) taken: u64,
    /// Jobs refused at capacity (`QueueFull`, `AtCapacity`).
    pub(crate) refused: u64,
    /// Jobs the watchdog reported: running or blocked past its threshold.
    pub(crate) overdue: u64,
}

/// A stall episode in progress (README.md: "Stalls").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stall {
    /// When jobs were first seen waiting with no thread to run them.
    pub(crate) since: Instant,
    /// `Counters::taken` then: any take since is progress.
    pub(crate) taken: u64,
    /// Warned about (once per episode).
    pub(crate) warned: bool,
}

/// Everything one pool lock guards (README.md: "State").
pub(crate) struct State<J> {
    /// Counted jobs (`Auto`, `Cpu`), oldest first.
    pub(crate) queue: JobQueue<J>,
    /// `MayBlock` jobs: taken first, whatever the target says.
    pub(crate) urgent: JobQueue<J>,
    /// Parked workers, most recently parked last (LIFO wake-up, the
    /// reaper takes the coldest from the front).
    pub(crate) idle_stack: Vec<u64>,
    /// `Job` tickets granted to parked workers and not yet consumed, per
    /// class (workers on their way to the queue: libuv's `nwaking`).
    pub(crate) notify: PerClass,
    /// Threads a submitter reserved for its job, per class, not started.
    /// With `notify`, the pool's *promises*.
    pub(crate) coming: PerClass,
    /// Lowest `idle` since the manager's current idle window began.
    pub(crate) idle_low: usize,
    /// When the manager's current idle window ends (none runs: `None`).
    pub(crate) idle_deadline: Option<Instant>,
    /// OS threads of the pool: from reservation until the thread's exit
    /// ended (joined), or it was detached. Never above `max_threads`.
    pub(crate) threads: usize,
    /// Of `threads`, those being created (reserved, not at `next` yet).
    pub(crate) spawning: usize,
    /// Of `threads`, those that left the pool and are not joined yet.
    pub(crate) exiting: usize,
    /// The handles of those (a thread whose creation has not returned yet
    /// brings its own later): joined once gone, by the next leaver, the
    /// manager, a submitter at the cap, or a shutdown.
    pub(crate) exited: VecDeque<ExitHandle>,
    /// Spares requested from the manager by a dispatch that used the last
    /// ones, not yet reserved (README.md: "Dispatch").
    pub(crate) grow: usize,
    pub(crate) busy: usize,
    /// Workers in a counted job that is not blocked (cmwq's `nr_running`).
    pub(crate) running: usize,
    /// Workers polling for a job for a moment before parking.
    pub(crate) spinning: usize,
    /// Extra running jobs the liveness backstop allows beyond the target
    /// while work waits (reset when the queue empties).
    pub(crate) extra: usize,
    /// Extra running places the monitor keeps while foreign blocks keep
    /// happening (README.md: "Adaptive places"): the places that jobs
    /// blocked but not yet found hold on average. At most `target`.
    pub(crate) adaptive: usize,
    /// When a worker last started a counted job (the liveness backstop).
    pub(crate) last_start: Instant,
    pub(crate) shutdown: bool,
    pub(crate) closing: bool,
    pub(crate) manager_notified: bool,
    /// Threads blocked in `wait_until`: `done_cv` is notified only if any.
    pub(crate) done_waiters: usize,
    pub(crate) next_worker: u64,
    pub(crate) workers: HashMap<u64, WorkerSlot, BuildHasherDefault<WorkerNoHasher>>,
    pub(crate) counters: Counters,
    /// The stall episode in progress, if any.
    pub(crate) stall: Option<Stall>,
    /// A refusal episode runs (capacity refusals since the last accepted
    /// job); `refusal_unreported`: its start is not logged yet.
    pub(crate) refusing: bool,
    pub(crate) refusal_unreported: bool,
    /// When the watchdog last looked at the running jobs.
    pub(crate) watchdog_at: Option<Instant>,
    /// Learned hints: which kinds of job block.
    pub(crate) learned: super::learn::Learned,
    /// The inbox's buffer between swaps (README.md: "Submit without the
    /// pool lock"): empty outside `take_inbox`; its capacity is reused.
    pub(crate) inbox_buf: Vec<J>,
    /// Inbox jobs that met a shut-down or closing pool, counted
    /// `cancelled`, until a holder that refuses ends them (README.md:
    /// "Submit without the pool lock").
    pub(crate) refused: Vec<J>,
}

impl<J> State<J> {
    pub(crate) fn new() -> State<J> {
        State {
            queue: JobQueue::new(super::queue::COUNTED),
            urgent: JobQueue::new(super::queue::URGENT),
            idle_stack: Vec::new(),
            notify: PerClass::default(),
            coming: PerClass::default(),
            idle_low: 0,
            idle_deadline: None,
            threads: 0,
            spawning: 0,
            exiting: 0,
            exited: VecDeque::new(),
            grow: 0,
            busy: 0,
            running: 0,
            spinning: 0,
            extra: 0,
            adaptive: 0,
            last_start: Instant::now(),
            shutdown: false,
            closing: false,
            manager_notified: false,
            done_waiters: 0,
            next_worker: 0,
            workers: HashMap::default(),
            counters: Counters::default(),
            stall: None,
            refusing: false,
            refusal_unreported: false,
            watchdog_at: None,
            learned: super::learn::Learned::default(),
            inbox_buf: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Parked workers nobody has claimed.
    pub(crate) fn idle(&self) -> usize {
        self.idle_stack.len()
    }

    /// Jobs waiting for a worker, of both classes.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len() + self.urgent.len()
    }

    pub(crate) fn waiting(&self, c: Class) -> usize {
        match c {
            Class::Counted => self.queue.len(),
            Class::Urgent => self.urgent.len(),
        }
    }

    /// Promises of a worker on its way for a job of class `c`.
    pub(crate) fn promised(&self, c: Class) -> usize {
        self.notify.get(c) + self.coming.get(c)
    }

    /// Threads still in the pool (not exiting).
    pub(crate) fn members(&self) -> usize {
        self.threads - self.exiting
    }

    /// Jobs of class `c` waiting with no worker promised to them.
    pub(crate) fn unserved(&self, c: Class) -> usize {
        self.waiting(c).saturating_sub(self.promised(c))
    }

    /// The identities of README.md "Invariants", O(1): run at every unlock
    /// in debug builds and under the models. Panics naming the broken one.
    pub(crate) fn check_invariants(&self, cfg: &Config) {
        let c = &self.counters;
        // I1: every accepted job is in exactly one place (a cancelled one
        // left in a queue counts as cancelled only).
        self.queue.check();
        self.urgent.check();
        let accounted =
            c.completed + c.panicked + c.cancelled + self.busy as u64 + self.queued() as u64;
        assert_eq!(
            c.submitted, accounted,
            "I1 submitted == completed + panicked + cancelled + busy + queued"
        );
        // I2: the pool's OS threads never exceed the cap, and every
        // thread is in one of the counted conditions at most once.
        assert!(
            self.threads <= cfg.max_threads,
            "I2 threads {} > max_threads {}",
            self.threads,
            cfg.max_threads
        );
        assert!(
            self.spawning + self.exiting + self.busy + self.idle() + self.notify.total()
                <= self.threads,
            "I2 spawning {} + exiting {} + busy {} + idle {} + notified {} > threads {}",
            self.spawning,
            self.exiting,
            self.busy,
            self.idle(),
            self.notify.total(),
            self.threads
        );
        assert!(
            self.exited.len() <= self.exiting,
            "I2 a pending exit handle is counted"
        );
        // I3: running counts a subset of the busy workers.
        assert!(
            self.running <= self.busy,
            "I3 running {} > busy {}",
            self.running,
            self.busy
        );
        // The adaptive places are bounded by the target (README.md:
        // "Adaptive places").
        assert!(
            self.adaptive <= cfg.target.unwrap_or(0),
            "adaptive places {} > target",
            self.adaptive
        );
        // I4: promises: reserved threads are being created; a promise per
        // class never outnumbers... the threads that hold it.
        assert!(self.coming.total() <= self.spawning, "I4 coming > spawning");
        assert!(self.spinning <= 1, "I4 at most one spinner");
        // I5: the queue bound, per class (a promise serves only its class).
        if let Some(n) = cfg.wait_bound() {
            if !self.shutdown {
                let unserved = self.unserved(Class::Counted) + self.unserved(Class::Urgent);
                assert!(
                    unserved <= n,
                    "I5 {unserved} jobs wait with no worker on its way, bound {n}"
                );
            }
        }
        if self.shutdown {
            assert_eq!(self.queued(), 0, "I1 a shut-down pool keeps no queue");
        }
    }
}

#[cfg(any(loom, shuttle))]
impl<J: super::QueuedJob> State<J> {
    /// The walks over all workers and queued jobs (models only): the
    /// counts agree with what they summarise.
    pub(crate) fn check_slots(&self) {
        let mut notify = PerClass::default();
        let mut coming = PerClass::default();
        let mut running = 0;
        self.queue.check_marks();
        self.urgent.check_marks();
        self.learned.check();
        for (no, w) in &self.workers {
            if let Some(Ticket::Job(c)) = w.ticket {
                *notify.get_mut(c) += 1;
                assert!(
                    !self.idle_stack.contains(no),
                    "I4 a claimed worker is still parked"
                );
            }
            if let Some(c) = w.coming {
                *coming.get_mut(c) += 1;
            }
            if w.current.as_ref().is_some_and(Current::in_running) {
                running += 1;
            }
        }
        for no in &self.idle_stack {
            let w = self.workers.get(no).expect("I4 a parked worker has a slot");
            assert!(w.ticket.is_none(), "I4 a parked worker holds a ticket");
        }
        assert_eq!(notify, self.notify, "I4 notify counts the Job tickets");
        assert_eq!(coming, self.coming, "I4 coming counts the reserved slots");
        assert_eq!(
            running, self.running,
            "I3 running counts the counted, unblocked jobs"
        );
        assert!(
            self.workers.len() <= self.threads,
            "I2 a slot per thread at most"
        );
    }
}
