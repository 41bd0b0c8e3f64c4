//! The public view of every live managed thread and pool: [`lookup`] by
//! [`ThreadId`], and [`snapshot`].
//!
//! Ids carry a generation (see [`ThreadId`]): an id kept past its thread's
//! exit resolves to nothing, never to a later thread in the same slot.
//! This module sits above the thread and pool layers and only reads them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{find, live_records};
pub use crate::record::{ThreadId, ThreadKind, ThreadState, WaitKind};
pub use crate::sync::{Incident, IncidentKind, INCIDENTS_KEPT};
use crate::thread::Stopper;

/// A [`Stopper`] for the live managed thread `id`, or `None` once that
/// thread has exited. Never returns a later thread that reused the slot.
///
/// Pool workers are not stoppable by id (`None` here, although
/// [`snapshot`] shows them): a worker outlives its jobs, so stop the job
/// ([`Job::cancel`](crate::Job::cancel)) or the pool
/// ([`Pool::shutdown`](crate::Pool::shutdown)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use threadward::registry;
///
/// let t = threadward::spawn("looked-up", |cx| cx.sleep(Duration::from_secs(3600))).unwrap();
/// let stopper = registry::lookup(t.id()).expect("still running");
/// stopper.request_stop();
/// let id = t.id();
/// t.join().unwrap().unwrap_err();
/// assert!(registry::lookup(id).is_none());
/// ```
pub fn lookup(id: ThreadId) -> Option<Stopper> {
    find(id)
        .filter(|r| r.kind == ThreadKind::Thread)
        .map(Stopper::from_record)
}

/// One managed thread as seen by [`snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// Its id.
    pub id: ThreadId,
    /// Its full name.
    pub name: Arc<str>,
    /// Managed thread or pool worker (of which pool).
    pub kind: ThreadKind,
    /// What it is doing.
    pub state: ThreadState,
    /// How long it has been in `state`.
    pub in_state: Duration,
    /// The pool job it runs, if any.
    pub job: Option<crate::pool::JobId>,
    /// That job was reported by its pool's watchdog: it has run (or been
    /// blocked) past the threshold ([`PoolBuilder::watchdog`](crate::PoolBuilder::watchdog)).
    pub overdue: bool,
    /// A pool job that returned while the worker still runs its user code
    /// (its waker, the drop of a detached job's value), possibly beside
    /// its next `job`.
    pub finishing_job: Option<crate::pool::JobId>,
}

/// A live pool as seen by [`snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolInfo {
    /// The pool's name.
    pub name: Arc<str>,
    /// Its counts at the snapshot.
    pub stats: crate::pool::PoolStats,
    /// The kinds of job it has seen block (learned hints), most recently
    /// seen first; at most 256.
    pub kinds: Vec<crate::pool::JobKind>,
}

/// Every live managed thread and pool at one moment; `Display` renders a
/// table like `ps`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// The threads, ordered by slot.
    pub threads: Vec<ThreadInfo>,
    /// The live pools with their counts.
    pub pools: Vec<PoolInfo>,
    /// The latest incidents (at most [`INCIDENTS_KEPT`]): what went wrong
    /// where no call could return an error (a pool dropped with
    /// stragglers, a contained panic), also logged through `tracing`.
    pub incidents: Vec<Incident>,
    /// Incidents since the process started (older ones are not kept).
    pub incidents_total: u64,
    /// How the pool monitor sees jobs block outside the library's waits:
    /// through context-switch records (`Some(true)`), through `/proc` looks
    /// only (`Some(false)`: the kernel refused the records, or
    /// `THREADWARD_SWITCH_RECORDS=off`), or not needed yet (`None`: no
    /// concurrency-managed pool was saturated so far).
    pub switch_records: Option<bool>,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<24} {:<18} {:<16} {:>10} {:>8}",
            "ID", "NAME", "KIND", "STATE", "FOR", "JOB"
        )?;
        for t in &self.threads {
            let kind = match &t.kind {
                ThreadKind::Thread => "thread".to_owned(),
                ThreadKind::PoolWorker { pool } => format!("pool:{pool}"),
                ThreadKind::PoolService => "pool-service".to_owned(),
            };
            // A job the watchdog reported is marked `!`.
            let job = t.job.map_or_else(
                || "-".to_owned(),
                |j| format!("{j}{}", if t.overdue { "!" } else { "" }),
            );
            writeln!(
                f,
                "{:<10} {:<24} {:<18} {:<16} {:>10} {:>8}",
                t.id.to_string(),
                t.name,
                kind,
                t.state.to_string(),
                format!("{:.1?}", t.in_state),
                job
            )?;
        }
        for p in &self.pools {
            let s = &p.stats;
            writeln!(
                f,
                "pool {}: {} threads ({} idle, {} busy, {} running, {} compensated), {} queued, peak {}, {} spawned, {} submitted, {} completed, {} panicked, {} cancelled, {} spawn failures, {} stalls",
                p.name, s.threads, s.idle, s.busy, s.running, s.compensated, s.queued, s.peak,
                s.threads_spawned, s.submitted, s.completed, s.panicked, s.cancelled,
                s.spawn_failures, s.stalls
            )?;
            write_kinds(f, p)?;
        }
        if let Some(last) = self.incidents.last() {
            writeln!(
                f,
                "incidents: {} (latest: {})",
                self.incidents_total, last.message
            )?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// The snapshot in a few lines, for services with thousands of
    /// threads: one line per pool (threads, running, blocked, compensated,
    /// queued, stalls) and the count of threads in each state, instead of
    /// a line per thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().name("summ").build().unwrap();
    /// let text = threadward::registry::snapshot().summary().to_string();
    /// assert!(text.contains("pool summ:"));
    /// assert!(text.starts_with("threads:"));
    /// # drop(pool);
    /// ```
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }

    /// How many threads are in each state (named as `Display` names the
    /// state), sorted by the name: the summary's and the metrics' counts.
    pub(crate) fn threads_by_state(&self) -> Vec<(String, usize)> {
        let mut by_state: Vec<(String, usize)> = Vec::new();
        for t in &self.threads {
            let s = t.state.to_string();
            match by_state.iter_mut().find(|(k, _)| *k == s) {
                Some((_, n)) => *n += 1,
                None => by_state.push((s, 1)),
            }
        }
        by_state.sort();
        by_state
    }
}

/// [`Snapshot::summary`]: `Display` renders it.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a>(&'a Snapshot);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.0;
        let states: Vec<String> = snap
            .threads_by_state()
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(f, "threads: {} ({})", snap.threads.len(), states.join(", "))?;
        for p in &snap.pools {
            let s = &p.stats;
            writeln!(
                f,
                "pool {}: {} threads, {} running, {} blocked, {} compensated, {} queued, {} stalls",
                p.name,
                s.threads,
                s.running,
                s.busy.saturating_sub(s.running),
                s.compensated,
                s.queued,
                s.stalls
            )?;
            write_kinds(f, p)?;
        }
        if snap.incidents_total > 0 {
            writeln!(f, "incidents: {}", snap.incidents_total)?;
        }
        Ok(())
    }
}

/// Kinds shown per pool in a rendered snapshot (all are in `PoolInfo::kinds`).
const KINDS_SHOWN: usize = 4;

/// A pool's learned kinds, one line: the most recent few, each with its
/// recent runs that blocked.
fn write_kinds(f: &mut fmt::Formatter<'_>, p: &PoolInfo) -> fmt::Result {
    if p.kinds.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = p
        .kinds
        .iter()
        .take(KINDS_SHOWN)
        .map(|k| {
            format!(
                "{} {}/{} blocked{}",
                k.name,
                k.recent_blocked,
                k.recent_runs,
                if k.learned { " (learned)" } else { "" }
            )
        })
        .collect();
    let more = p.kinds.len().saturating_sub(KINDS_SHOWN);
    let more = if more > 0 {
        format!(", {more} more")
    } else {
        String::new()
    };
    writeln!(f, "  kinds that blocked: {}{more}", shown.join(", "))
}

/// A snapshot of every live managed thread: id, name, kind, state, time in
/// that state and current job. Takes the registry lock only to clone the
/// live records; the fields are read lock-free afterwards.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use threadward::registry::{self, ThreadState, WaitKind};
///
/// let t = threadward::spawn("snap-sleeper", |cx| cx.sleep(Duration::from_secs(3600))).unwrap();
/// let deadline = std::time::Instant::now() + Duration::from_secs(10);
/// loop {
///     let snap = registry::snapshot();
///     let me = snap.threads.iter().find(|i| i.id == t.id()).unwrap();
///     if me.state == ThreadState::Waiting(WaitKind::Sleep) {
///         print!("{snap}");
///         break;
///     }
///     assert!(std::time::Instant::now() < deadline);
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// t.stop().unwrap().unwrap_err();
/// ```
pub fn snapshot() -> Snapshot {
    let pools = crate::pool::live_pools();
    let stopping: std::collections::HashSet<ThreadId> = pools
        .iter()
        .flat_map(|p| p.stopping.iter().copied())
        .collect();
    let threads = live_records()
        .into_iter()
        .map(|r| {
            let (mut state, in_state) = r.state();
            if state == ThreadState::Running && stopping.contains(&r.id) {
                state = ThreadState::Stopping; // a worker follows its job
            }
            ThreadInfo {
                id: r.id,
                name: r.name.clone(),
                kind: r.kind.clone(),
                state,
                in_state,
                job: r.job().map(crate::pool::JobId),
                overdue: r.overdue(),
                finishing_job: r.finishing().map(crate::pool::JobId),
            }
        })
        .collect();
    let pools = pools
        .into_iter()
        .map(|p| PoolInfo {
            name: p.name,
            stats: p.stats,
            kinds: p.kinds,
        })
        .collect();
    let (incidents, incidents_total) = crate::sync::incidents();
    Snapshot {
        switch_records: crate::pool::switch_records_in_use(),
        threads,
        pools,
        incidents,
        incidents_total,
    }
}
