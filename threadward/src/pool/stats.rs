//! [`PoolStats`]: counts read in one critical section.

/// A consistent view of a pool's counts, from one critical section.
///
/// At any moment `submitted == completed + panicked + cancelled + busy +
/// queued`, up to jobs whose worker has finished them but not yet reported
/// back (a few instructions); [`Pool::wait_idle`](crate::Pool::wait_idle)
/// waits past that.
///
/// # Examples
///
/// ```
/// let pool = threadward::Pool::builder().build().unwrap();
/// pool.spawn(|_| ()).unwrap();
/// pool.wait_idle();
/// let s = pool.stats();
/// assert_eq!((s.submitted, s.completed, s.busy, s.queued), (1, 1, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Worker threads alive or being created.
    pub threads: usize,
    /// Workers parked waiting for a job (not yet claimed by a submitter).
    pub idle: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Of `busy`, the jobs counted against the concurrency target now (not
    /// blocked, not hinted `MayBlock`).
    pub running: usize,
    /// Running places the pool keeps beyond its target now because jobs
    /// keep blocking outside the library's waits (the pool README's
    /// "Adaptive places"): at most the target, back to 0 when blocks stop.
    pub adaptive_places: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Most worker threads alive at once.
    pub peak: usize,
    /// Worker threads created so far.
    pub threads_spawned: u64,
    /// Jobs accepted by `spawn`.
    pub submitted: u64,
    /// Jobs that returned a value.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs that never ran: cancelled, or dropped by shutdown.
    pub cancelled: u64,
    /// Thread creations the OS refused.
    pub spawn_failures: u64,
    /// Jobs the monitor found blocked outside the library's waits, or
    /// hogging a CPU, and stopped counting against the target.
    pub compensated: u64,
    /// Of those, jobs found blocked that the monitor later saw running
    /// again and counted again (cmwq's `wq_worker_running`): a job that
    /// computes after a foreign block does not run uncounted for good.
    pub recounted: u64,
    /// Extra running places the liveness backstop opened: queued work saw
    /// no counted job start for 100 ms (a job blocked where the monitor
    /// could not tell), so one more job ran beyond the target until the
    /// queue emptied (pool README, "The monitor").
    pub backstops: u64,
    /// Stalls warned about: jobs waited for a thread at `max_threads`, with
    /// none free and none on its way, longer than the pool's stall
    /// threshold ([`PoolBuilder::stall_warning`](crate::PoolBuilder::stall_warning)).
    /// Each also logs one warning and records an incident.
    pub stalls: u64,
    /// Jobs refused at capacity: [`SpawnError::QueueFull`](crate::SpawnError::QueueFull)
    /// and [`SpawnError::AtCapacity`](crate::SpawnError::AtCapacity). The
    /// first of an episode (until a job is accepted again) also logs one
    /// warning and records an incident.
    pub refused: u64,
    /// Jobs the watchdog reported: still running, or blocked, past its
    /// threshold ([`PoolBuilder::watchdog`](crate::PoolBuilder::watchdog)).
    pub overdue: u64,
    /// Kinds of job (closure types) the pool runs as `MayBlock` now,
    /// having learned that they block ([`PoolBuilder::learn_hints`](crate::PoolBuilder::learn_hints)).
    pub learned_kinds: usize,
    /// Jobs run as `MayBlock` because their kind was learned to block.
    pub learned_runs: u64,
}

/// A kind of job a pool has seen block, with its recent runs (learned
/// hints: the pool README's "Learned hints"), as listed in
/// [`PoolInfo::kinds`](crate::registry::PoolInfo::kinds).
///
/// # Examples
///
/// ```
/// use threadward::{registry, Pool};
///
/// let pool = Pool::builder().name("kinds").build().unwrap();
/// pool.spawn(|_| ()).unwrap().join().unwrap();
/// let snap = registry::snapshot();
/// let info = snap.pools.iter().find(|p| &*p.name == "kinds").unwrap();
/// // A kind that never blocked is not kept.
/// assert!(info.kinds.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobKind {
    /// The closure's type name, or `"named"` for a key given to
    /// [`Pool::spawn_kind`](crate::Pool::spawn_kind).
    pub name: &'static str,
    /// The kind's id (a hash of the type or of the named key).
    pub id: u64,
    /// Runs the rule looks at now (the last ones, at most 8).
    pub recent_runs: u32,
    /// Of those, the ones that blocked outside the library's waits.
    pub recent_blocked: u32,
    /// Its jobs run as [`JobHint::MayBlock`](crate::JobHint::MayBlock) now.
    pub learned: bool,
}
