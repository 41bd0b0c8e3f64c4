//! The pool's state (README.md: "State"); its identities (README.md:
//! "Invariants") are checked in `invariants.rs`, what it keeps per worker
//! is in `slot.rs`.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use super::queue::JobQueue;
use super::slot::{ExitHandle, WorkerNoHasher, WorkerSlot};

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
    /// Extra places the liveness backstop opened.
    pub(crate) backstops: u64,
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
}
