//! Elastic blocking pools: threads whose jobs may block indefinitely.
//!
//! See `README.md` in this directory for the protocol: dispatch, spare
//! management, idle timeout, shutdown, with the worker state diagram.
//!
//! # How the pool decides to grow
//!
//! A pool runs about `concurrency` jobs at once (by default one per CPU)
//! and keeps `min_idle` warm spare threads parked. A job submitted while a
//! spare is parked and the target leaves room starts after a single
//! wake-up; a worker that finishes a job takes the next one without any.
//! When a running job blocks — in one of the library's waits, in
//! [`Context::blocking`], or anywhere else (found by a process-wide
//! monitor within a few hundred microseconds) — it stops counting, and a
//! queued job gets a parked worker or a new thread at once (the kernel's
//! concurrency-managed workqueues). One process-wide manager thread creates
//! threads, up to `max_threads` — never the submitter (but for an empty
//! pool or a bounded queue at its bound), never under the pool lock.
//! Spares beyond `min_idle` exit after `idle_timeout`, or at once beyond
//! `max_idle`.

mod builder;
mod core;
mod job;
mod manager;
mod monitor;
mod service;
mod set;
mod shutdown;
#[cfg(all(test, shuttle))]
mod shuttle_tests;
mod stats;
mod switches;
mod worker;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub use self::builder::{Concurrency, PoolBuilder, DEFAULT_STACK_SIZE};
pub use self::core::{JobHint, Queue};
pub use self::job::{Job, JobError, JobGuard, JobId};
pub use self::set::{JobSet, JoinNextError, MapError};
pub use self::shutdown::{ShutdownReport, Straggler};
pub use self::stats::{JobKind, PoolStats};

use self::core::{Core, Refusal, Submitted};
use self::job::{ByType, JobCell, KindOf, Named, Task};
use self::worker::PoolRef;
use crate::stop::LazyStop;
use crate::sync;
use crate::thread::Context;

/// Why [`Pool::spawn`] refused a job (the job was not queued and will
/// never run).
///
/// # Examples
///
/// ```
/// use threadward::{Pool, SpawnError};
///
/// let pool = Pool::builder().build().unwrap();
/// pool.shutdown(std::time::Duration::from_secs(1));
/// assert!(matches!(pool.spawn(|_| ()), Err(SpawnError::ShutDown)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The pool is shut down or closing.
    #[error("the pool is shut down")]
    ShutDown,
    /// `Queue::Bounded(n)`: all threads busy and `n` jobs already waiting.
    #[error("all pool threads are busy and the queue is full")]
    QueueFull,
    /// `Queue::Handoff`: all `max_threads` threads are busy.
    #[error("all pool threads are busy and the pool has no queue")]
    AtCapacity,
    /// The pool had no thread and the OS refused to create one.
    #[error("the OS refused to create a pool thread")]
    Os(#[source] io::Error),
}

/// Job ids are unique in the process, across pools.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// A pool of threads for jobs that may block indefinitely.
///
/// `Pool` is `Send + Sync`: share it in an `Arc`. Dropping it shuts it down
/// with the builder's `drop_deadline`, logging stragglers.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let pool = Arc::new(threadward::Pool::builder().name("blocking").build().unwrap());
/// let jobs: Vec<_> = (0..100)
///     .map(|i| pool.spawn(move |cx| cx.sleep(Duration::from_millis(5)).map(|_| i)).unwrap())
///     .collect();
/// let sum: u64 = jobs.into_iter().map(|j| j.join().unwrap().unwrap()).sum();
/// assert_eq!(sum, 4950);
/// assert!(pool.stats().peak > 1); // it grew while jobs blocked
/// ```
#[must_use = "dropping a Pool shuts it down"]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PoolRef,
    /// Lives as long as the pool: the monitor watches the pool while it
    /// can upgrade this.
    alive: Arc<()>,
    drop_deadline: Duration,
}

/// Pool keys are unique in the process (0 means "no pool").
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

impl Pool {
    /// A builder with the defaults (`min_idle` 1, `max_threads` 512,
    /// `idle_timeout` 10 s, unbounded queue).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// assert_eq!(pool.spawn(|_| 1).unwrap().join(), Ok(1));
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    pub(crate) fn start(b: PoolBuilder) -> io::Result<Pool> {
        let name: Arc<str> = Arc::from(b.name.as_str());
        let pool = Pool {
            shared: Arc::new(Shared {
                pool: PoolRef {
                    core: Arc::new(Core::with_notifier(
                        b.cfg.clone(),
                        Some(Box::new(manager::notify)),
                    )),
                    name: name.clone(),
                    key: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
                    stack_size: b.stack_size,
                },
                drop_deadline: b.drop_deadline,
                alive: Arc::new(()),
            }),
        };
        if b.cfg.target.is_some() {
            monitor::watch(&pool.shared.alive, &pool.shared.pool.core);
        }
        register(&pool.shared);
        // Spares first, so the manager (which creates whatever the deficit
        // asks for) does not create them a second time.
        for _ in 0..b.cfg.min_idle {
            // On error, dropping `pool` shuts down what did start.
            let no = pool.shared.pool.core.reserve();
            if let Err(e) = worker::start_worker(&pool.shared.pool, no) {
                pool.shared.pool.core.spawn_failed(no);
                return Err(e);
            }
        }
        // Wait (bounded) until the spares are parked, so that the first
        // job after `build` is a single wake-up and the queue accounting
        // sees them.
        let min_idle = b.cfg.min_idle;
        pool.core()
            .wait_until(sync::deadline_after(Duration::from_secs(10)), None, |st| {
                st.idle() >= min_idle
            });
        manager::register(&pool.shared.alive, pool.shared.pool.clone())?;
        Ok(pool)
    }

    fn core(&self) -> &Core<Task> {
        &self.shared.pool.core
    }

    /// The pool's name (its threads' prefix).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().name("p").build().unwrap();
    /// assert_eq!(pool.name(), "p");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.pool.name
    }

    /// Submits a job. It starts at once on a parked spare thread (one
    /// wake-up), or waits in the queue while the manager creates threads.
    ///
    /// # Errors
    ///
    /// [`SpawnError`]: shut down, queue full, at capacity with no queue, or
    /// — only for a pool with no thread at all — the OS refusing to create
    /// one. A refused job is dropped without running.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let job = pool.spawn(|cx| format!("hello from {}", cx.name())).unwrap();
    /// assert!(job.join().unwrap().starts_with("hello from pool-"));
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Result<Job<T>, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_hinted(JobHint::Auto, f)
    }

    /// [`spawn`](Pool::spawn) with a hint of how the job behaves.
    ///
    /// [`JobHint::MayBlock`]: the job gets a thread at once and never
    /// counts against the concurrency target (a plain blocking pool's
    /// behaviour). [`JobHint::Cpu`]: the job computes; the monitor never
    /// adds a thread because of it.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Pool::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// use threadward::{JobHint, Pool};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// let job = pool
    ///     .spawn_hinted(JobHint::MayBlock, |_| std::thread::sleep(std::time::Duration::from_millis(5)))
    ///     .unwrap();
    /// job.join().unwrap();
    /// ```
    pub fn spawn_hinted<F, T>(&self, hint: JobHint, f: F) -> Result<Job<T>, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit(hint, LazyStop::default(), f)
    }

    /// [`spawn`](Pool::spawn) a job whose *kind* is `kind`, for the pool's
    /// learned hints (the pool README's "Learned hints"): the pool learns
    /// per kind whether jobs block outside the library's waits, and runs a
    /// kind that mostly blocked as [`JobHint::MayBlock`] from then on. By
    /// default a job's kind is its closure's type; name it when one closure
    /// type wraps both quick and blocking work (a dispatcher calling
    /// whatever callback a connection registered), so each callback is
    /// learned on its own. Jobs of equal keys share a kind (keys are
    /// hashed, 64 bits).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Pool::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let callback: fn(u32) -> u32 = |x| x + 1; // a registered user callback
    /// let job = pool.spawn_kind(("deliver", "xpnet"), move |_| callback(1)).unwrap();
    /// assert_eq!(job.join(), Ok(2));
    /// ```
    pub fn spawn_kind<K, F, T>(&self, kind: K, f: F) -> Result<Job<T>, SpawnError>
    where
        K: std::hash::Hash,
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let key = BuildHasherDefault::<DefaultHasher>::default().hash_one(kind);
        let id = self.next_job_id();
        self.submit_as(id, JobHint::Auto, LazyStop::default(), Named(key), f)
    }

    /// [`spawn`](Pool::spawn) a job that is also stopped when `token`'s
    /// stop is requested (a connection's, a request's, the service's), in
    /// addition to its own handle's stop and the pool's shutdown: its stop
    /// state is a [child](crate::stop::StopToken::child) of `token`. A job still
    /// queued then runs and sees its stop at once.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Pool::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let request = threadward::StopSource::new();
    /// let job = pool
    ///     .spawn_stop_on(&request.token(), |cx| cx.sleep(Duration::from_secs(60)))
    ///     .unwrap();
    /// request.request_stop(); // the request was abandoned
    /// assert_eq!(job.join(), Ok(Err(threadward::Stopped)));
    /// ```
    pub fn spawn_stop_on<F, T>(
        &self,
        token: &crate::stop::StopToken,
        f: F,
    ) -> Result<Job<T>, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit(JobHint::Auto, LazyStop::ready(token.child()), f)
    }

    fn submit<F, T>(&self, hint: JobHint, stop: LazyStop, f: F) -> Result<Job<T>, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = self.next_job_id();
        self.submit_as(id, hint, stop, ByType, f)
    }

    /// A fresh job id (a job set names its jobs before it spawns them).
    pub(crate) fn next_job_id(&self) -> u64 {
        NEXT_JOB.fetch_add(1, Ordering::Relaxed)
    }

    /// [`spawn_hinted`](Pool::spawn_hinted) of a job whose id is `id`.
    pub(crate) fn spawn_with_id<F, T>(
        &self,
        id: u64,
        hint: JobHint,
        f: F,
    ) -> Result<Job<T>, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_as(id, hint, LazyStop::default(), ByType, f)
    }

    fn submit_as<K: KindOf, F, T>(
        &self,
        id: u64,
        hint: JobHint,
        stop: LazyStop,
        kind: K,
        f: F,
    ) -> Result<Job<T>, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        let cell = JobCell::with_kind(id, hint, stop, kind, f);
        self.enqueue(cell.clone(), id)?;
        Ok(Job::new(cell, Arc::downgrade(&self.shared.pool.core)))
    }

    /// Runs `f` on the pool like [`spawn`](Pool::spawn), with no handle:
    /// nothing to join, cancel or drop (`threadpool::execute`,
    /// `rayon::spawn`). The cheapest way to submit: a job whose result
    /// nobody waits for skips the handle's share of the job's cell and its
    /// drop. A panic in `f` is contained and counted in
    /// [`PoolStats::panicked`]; the pool's shutdown stops it like any job.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Pool::spawn); a refused job is dropped without running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let done = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..100 {
    ///     let done = done.clone();
    ///     pool.execute(move |_| {
    ///         done.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .unwrap();
    /// }
    /// pool.wait_idle();
    /// assert_eq!(done.load(Ordering::Relaxed), 100);
    /// ```
    pub fn execute<F>(&self, f: F) -> Result<(), SpawnError>
    where
        F: FnOnce(&Context) + Send + 'static,
    {
        let id = self.next_job_id();
        self.enqueue(JobCell::new(id, JobHint::Auto, LazyStop::default(), f), id)
    }

    /// Queues job `id`; a refused one is resolved and dropped here (its
    /// closure's drop contained).
    fn enqueue(&self, task: Task, id: u64) -> Result<(), SpawnError> {
        let pool = &self.shared.pool;
        let refused = match pool.core.submit(task) {
            // A submit through the inbox reports `Queued`; a lock holder
            // that moved it in may have left the pool saturated: the
            // monitor is poked as for `Waiting` (one load when not).
            Ok(Submitted::Queued) => {
                if pool.core.take_saturation() {
                    monitor::poke();
                }
                None
            }
            Ok(Submitted::Waiting) => {
                pool.core.take_saturation();
                monitor::poke();
                None
            }
            Ok(Submitted::CreateWorker(no)) => {
                // A worker reserved for this job (an empty pool, or a
                // bounded queue at its bound): create it before returning,
                // so the OS's refusal reaches the caller. If another worker
                // took the job meanwhile, it is served.
                worker::start_worker(pool, no)
                    .err()
                    .and_then(|e| Some((pool.core.withdraw(no, id)?, SpawnError::Os(e))))
            }
            Err((task, Refusal::ShutDown)) => Some((task, SpawnError::ShutDown)),
            Err((task, Refusal::QueueFull)) => Some((task, SpawnError::QueueFull)),
            Err((task, Refusal::AtCapacity)) => Some((task, SpawnError::AtCapacity)),
        };
        match refused {
            Some((task, e)) => {
                // The job never runs: its closure goes now, contained.
                task.abort(JobError::ShutDown);
                if matches!(e, SpawnError::QueueFull | SpawnError::AtCapacity) {
                    if let Some((threads, queued, refused)) = pool.core.refusal_began() {
                        let name = &self.shared.pool.name;
                        tracing::warn!(pool = %name, threads, queued, refused, error = %e,
                            "pool refuses jobs at capacity (raise max_threads or the queue bound)");
                        crate::sync::incident(
                            crate::sync::IncidentKind::PoolRefusing,
                            format!("pool {name}: {e} ({threads} threads, {queued} queued)"),
                        );
                    }
                }
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// The pool's counts, read in one critical section.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().min_idle(2).build().unwrap();
    /// assert_eq!(pool.stats().threads, 2);
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// Blocks until no job is queued or running. Called from one of the
    /// pool's own jobs, it waits for every other job instead of deadlocking
    /// on itself.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// for _ in 0..10 {
    ///     pool.spawn(|_| std::thread::sleep(std::time::Duration::from_millis(1))).unwrap();
    /// }
    /// pool.wait_idle();
    /// assert_eq!(pool.stats().completed, 10);
    /// ```
    pub fn wait_idle(&self) {
        self.idle_until(None);
    }

    /// [`wait_idle`](Pool::wait_idle) bounded by `timeout`; returns whether
    /// the pool went idle.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let _job = pool.spawn(|cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// assert!(!pool.wait_idle_timeout(std::time::Duration::from_millis(10)));
    /// ```
    pub fn wait_idle_timeout(&self, timeout: Duration) -> bool {
        self.idle_until(sync::deadline_after(timeout))
    }

    /// The caller's worker number, if it is one of this pool's workers
    /// (known from the worker's first instruction, before it takes a job).
    pub(super) fn own_worker(&self) -> Option<u64> {
        worker::current_worker(self.shared.pool.key)
    }

    /// Called from one of this pool's own jobs, waiting for "no job" would
    /// wait for the caller itself: it waits for every *other* job instead,
    /// and stops waiting when what is left is queued behind the caller
    /// (every thread busy, `max_threads` reached, only the caller running).
    /// The caller's wait counts as blocking, so the jobs it waits for can
    /// run in its place under the target.
    fn idle_until(&self, deadline: Option<Instant>) -> bool {
        self.core().wait_idle(deadline, self.own_worker())
    }
}

impl Shared {
    fn stats(&self) -> PoolStats {
        self.pool.core.stats()
    }
}

/// Every live pool, for `registry::snapshot` (a pool drops out when it is
/// dropped).
static POOLS: std::sync::Mutex<Vec<Weak<Shared>>> = std::sync::Mutex::new(Vec::new());

fn register(shared: &Arc<Shared>) {
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    pools.retain(|w| w.strong_count() > 0);
    pools.push(Arc::downgrade(shared));
}

/// Whether the monitor uses context-switch records (for the snapshot).
pub(crate) fn switch_records_in_use() -> Option<bool> {
    switches::in_use()
}

/// A live pool as the registry sees it.
pub(crate) struct PoolView {
    pub(crate) name: Arc<str>,
    pub(crate) stats: PoolStats,
    /// The workers whose job's stop was requested.
    pub(crate) stopping: Vec<crate::record::ThreadId>,
    /// The kinds of job it has seen block.
    pub(crate) kinds: Vec<JobKind>,
}

/// Every live pool (for `registry::snapshot`).
pub(crate) fn live_pools() -> Vec<PoolView> {
    let live: Vec<Arc<Shared>> = {
        let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|w| w.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    };
    live.iter()
        .map(|s| {
            let core = &s.pool.core;
            PoolView {
                name: s.pool.name.clone(),
                stats: s.stats(),
                stopping: core.stopping_workers(),
                kinds: core.kinds(),
            }
        })
        .collect()
}

impl Drop for Shared {
    fn drop(&mut self) {
        // `alive` is gone with this: the manager and the monitor re-check
        // (and exit if this was the last pool).
        let alive = std::mem::replace(&mut self.alive, Arc::new(()));
        drop(alive);
        manager::notify();
        if self.pool.core.cfg.target.is_some() {
            monitor::forget();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let report = self.shutdown(self.shared.drop_deadline);
        if !report.stragglers.is_empty() {
            tracing::warn!(pool = %self.name(), %report, "pool dropped with stragglers");
            crate::sync::incident(
                crate::sync::IncidentKind::DroppedPoolStragglers,
                format!("pool {} dropped with stragglers: {report}", self.name()),
            );
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name())
            .field("stats", &self.stats())
            .finish()
    }
}
