//! [`PoolBuilder`]: configuration and validation.

use std::io;
use std::time::Duration;

use super::core::{Config, Queue};
use super::Pool;

/// Default stack size of pool workers: 256 KiB.
///
/// An idle thread's resident memory does not depend on its stack size (only
/// touched pages count), while creating threads is 10–25 % faster with small
/// stacks than with std's 2 MiB (measured on the development machine). 256 KiB
/// leaves ordinary blocking code (I/O, formatting, logging, a few KiB of
/// locals per frame) a wide margin; raise it with
/// [`PoolBuilder::stack_size`] for deep recursion.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// How many jobs a pool runs at once before it stops adding threads for
/// queued jobs (cmwq's concurrency management).
///
/// A job that blocks does not count while it blocks: the library's own
/// waits and [`Context::blocking`](crate::Context::blocking) say so at
/// once, and a monitor finds jobs blocked anywhere else (or hogging a CPU)
/// within a few milliseconds. So short jobs run on about this many threads
/// (1 µs jobs at about 0.5-0.7× the rate of a fixed pool of as many
/// threads in the last bench runs: a saturated pool takes them without
/// its lock, and each job then costs a worker one lock, a clock read and
/// the job's own lock),
/// and jobs that block still each get a thread.
///
/// # Examples
///
/// ```
/// use threadward::{Concurrency, Pool};
///
/// let pool = Pool::builder().concurrency(Concurrency::Limit(2)).build().unwrap();
/// let jobs: Vec<_> = (0..100).map(|i| pool.spawn(move |_| i).unwrap()).collect();
/// assert_eq!(jobs.into_iter().map(|j| j.join().unwrap()).sum::<i32>(), 4950);
/// assert!(pool.stats().peak <= 4); // 2 running, spares
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Concurrency {
    /// One running job per CPU (`std::thread::available_parallelism`).
    #[default]
    Cpus,
    /// This many running jobs (at least 1).
    Limit(usize),
    /// No management: a thread for every concurrent job (a plain blocking
    /// pool, like tokio's `spawn_blocking`).
    Unlimited,
}

/// The largest `max_threads` a pool accepts: Linux's `PID_MAX_LIMIT`
/// (2^22), above which no system can run threads whatever its settings.
const MAX_THREADS_LIMIT: usize = 1 << 22;

/// Configures a [`Pool`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use threadward::{Pool, Queue};
///
/// let pool = Pool::builder()
///     .name("xpc-ch3")
///     .min_idle(2)
///     .max_threads(64)
///     .idle_timeout(Duration::from_secs(1))
///     .queue(Queue::Bounded(1000))
///     .build()
///     .unwrap();
/// assert_eq!(pool.name(), "xpc-ch3");
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    pub(crate) name: String,
    pub(crate) cfg: Config,
    concurrency: Concurrency,
    pub(crate) stack_size: usize,
    pub(crate) drop_deadline: Duration,
}

impl PoolBuilder {
    pub(crate) fn new() -> PoolBuilder {
        PoolBuilder {
            name: "pool".to_owned(),
            cfg: Config {
                min_idle: 1,
                max_idle: usize::MAX,
                max_threads: 512,
                idle_timeout: Duration::from_secs(10),
                queue: Queue::Unbounded,
                target: None,   // set from `concurrency` at build
                exit_window: 1, // the CPUs, set at build
                stall_after: Duration::from_secs(1),
                watchdog_after: Duration::from_secs(30),
                learn: true,
            },
            concurrency: Concurrency::Cpus,
            stack_size: DEFAULT_STACK_SIZE,
            drop_deadline: Duration::from_secs(5),
        }
    }

    /// Name prefix: workers are `prefix-N` (the OS name keeps `-N` visible)
    /// (default `pool`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().name("io").build().unwrap();
    /// assert_eq!(pool.name(), "io");
    /// ```
    pub fn name(mut self, prefix: impl Into<String>) -> PoolBuilder {
        self.name = prefix.into();
        self
    }

    /// Warm spare threads kept parked (default 1; 0 allowed: then the first
    /// job after an idle period waits for a thread to be created).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().min_idle(3).build().unwrap();
    /// assert_eq!(pool.stats().threads, 3);
    /// ```
    pub fn min_idle(mut self, n: usize) -> PoolBuilder {
        self.cfg.min_idle = n;
        self
    }

    /// Most parked workers kept: a worker that would park beyond this many
    /// exits at once (XPC's `idle_limit`; default: no limit, only the idle
    /// timeout shrinks the pool). Must be at least `min_idle`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().min_idle(1).max_idle(4).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn max_idle(mut self, n: usize) -> PoolBuilder {
        self.cfg.max_idle = n;
        self
    }

    /// How many jobs run at once before the pool stops adding threads for
    /// queued jobs (default [`Concurrency::Cpus`]). Jobs that block in the
    /// library's waits, in [`Context::blocking`](crate::Context::blocking),
    /// or (found by the monitor) anywhere else do not count while blocked.
    ///
    /// # Examples
    ///
    /// ```
    /// use threadward::{Concurrency, Pool};
    ///
    /// // One thread per concurrent job, as a plain blocking pool.
    /// let pool = Pool::builder().concurrency(Concurrency::Unlimited).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn concurrency(mut self, c: Concurrency) -> PoolBuilder {
        self.concurrency = c;
        self
    }

    /// Most worker threads at once (default 512; thousands work).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().max_threads(10_000).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn max_threads(mut self, n: usize) -> PoolBuilder {
        self.cfg.max_threads = n;
        self
    }

    /// How long workers beyond `min_idle` may stay parked before they exit
    /// (default 10 s). The manager checks once per `idle_timeout`, so a
    /// spare exits between one and two timeouts after it last worked.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder()
    ///     .idle_timeout(std::time::Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// # drop(pool);
    /// ```
    pub fn idle_timeout(mut self, d: Duration) -> PoolBuilder {
        self.cfg.idle_timeout = d;
        self
    }

    /// How long jobs may wait for a thread once `max_threads` are all busy
    /// (none parked, none being created) before the pool says it is
    /// stalled (default 1 s): one `tracing` warning per episode with the
    /// pool's counts, an incident in the registry's snapshot, and
    /// [`PoolStats::stalls`](crate::PoolStats::stalls). A job taken by any
    /// worker meanwhile is progress, not a stall. Checked by the
    /// process-wide manager thread, for every pool (`Unlimited` included).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder()
    ///     .max_threads(64)
    ///     .stall_warning(std::time::Duration::from_millis(250))
    ///     .build()
    ///     .unwrap();
    /// # drop(pool);
    /// ```
    pub fn stall_warning(mut self, after: Duration) -> PoolBuilder {
        self.cfg.stall_after = after;
        self
    }

    /// The watchdog's threshold (default 30 s, the kernel workqueue
    /// lockup detector's): a job still running, or blocked, this long
    /// after it started is reported once, with its worker's state and its
    /// age, through `tracing`, counted in
    /// [`PoolStats::overdue`](crate::PoolStats::overdue) and marked in the
    /// registry's snapshot ([`ThreadInfo::overdue`](crate::registry::ThreadInfo::overdue)).
    /// Checked by the process-wide manager every quarter threshold while
    /// jobs run, for every pool (`Unlimited` included).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder()
    ///     .watchdog(std::time::Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// # drop(pool);
    /// ```
    pub fn watchdog(mut self, after: Duration) -> PoolBuilder {
        self.cfg.watchdog_after = after;
        self
    }

    /// Whether the pool learns which kinds of job block (default on): a
    /// kind (a closure's type) whose recent unhinted runs mostly blocked
    /// outside the library's waits is run as [`JobHint::MayBlock`](crate::JobHint::MayBlock) from
    /// its next submit on, and its queued jobs are promoted at once; a
    /// kind that stops blocking loses the mark. Explicit hints always win.
    /// Only for pools with a concurrency target and an unbounded queue.
    /// The rule is in the pool's protocol write-up ("Learned hints");
    /// [`PoolStats::learned_kinds`](crate::PoolStats::learned_kinds) and
    /// `learned_runs` count it.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().learn_hints(false).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn learn_hints(mut self, on: bool) -> PoolBuilder {
        self.cfg.learn = on;
        self
    }

    /// Stack size of worker threads (default [`DEFAULT_STACK_SIZE`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().stack_size(1 << 20).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> PoolBuilder {
        self.stack_size = bytes;
        self
    }

    /// What happens to a job when all `max_threads` are busy (default
    /// [`Queue::Unbounded`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().queue(threadward::Queue::Bounded(8)).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn queue(mut self, q: Queue) -> PoolBuilder {
        self.cfg.queue = q;
        self
    }

    /// Deadline of the shutdown that dropping the pool performs (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder()
    ///     .drop_deadline(std::time::Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// drop(pool); // returns within 100 ms even if a job ignored its stop
    /// ```
    pub fn drop_deadline(mut self, d: Duration) -> PoolBuilder {
        self.drop_deadline = d;
        self
    }

    /// Builds the pool: starts its `min_idle` spare workers (and returns
    /// once they are parked) and registers it with the process-wide manager
    /// (and monitor, with a concurrency target), starting them if needed.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`], before any thread is created, for
    /// `max_threads == 0` or above 2^22 (Linux's `PID_MAX_LIMIT`),
    /// `min_idle > max_threads`, a `min_idle` larger than the threads this
    /// process can still hold (see the memory-mapping budget in the crate
    /// docs), a bad name (empty, NUL byte) or a stack size that overflows;
    /// the OS error if a thread cannot be created (nothing is left
    /// running).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = threadward::Pool::builder().max_threads(0).build().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn build(self) -> io::Result<Pool> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        let (min, max) = (self.cfg.min_idle, self.cfg.max_threads);
        if max == 0 {
            return invalid("pool max_threads must be at least 1".into());
        }
        if max > MAX_THREADS_LIMIT {
            return invalid(format!(
                "pool max_threads ({max}) exceeds {MAX_THREADS_LIMIT}, the most threads Linux can run"
            ));
        }
        if min > max {
            return invalid(format!("pool min_idle ({min}) exceeds max_threads ({max})"));
        }
        if min > self.cfg.max_idle {
            return invalid(format!(
                "pool min_idle ({min}) exceeds max_idle ({})",
                self.cfg.max_idle
            ));
        }
        let mut b = self;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        b.cfg.exit_window = cpus;
        b.cfg.learn &= b.cfg.queue == Queue::Unbounded && b.concurrency != Concurrency::Unlimited;
        b.cfg.target = match b.concurrency {
            Concurrency::Cpus => Some(cpus),
            Concurrency::Limit(0) => {
                return invalid("pool concurrency must be at least 1".into());
            }
            Concurrency::Limit(n) => Some(n),
            Concurrency::Unlimited => None,
        };
        let s = b;
        // Name and stack size are checked here, not only when a thread is
        // first created (a pool with min_idle 0 creates none now).
        crate::thread::validate(&format!("{}-0", s.name), Some(s.stack_size))?;
        if s.name.is_empty() {
            return invalid("pool name must not be empty".into());
        }
        if min > 0 {
            let room = crate::thread::budget::limit();
            if min > room {
                return invalid(format!(
                    "pool min_idle ({min}) exceeds the threads this process can still hold (~{room})"
                ));
            }
        }
        Pool::start(s)
    }
}
