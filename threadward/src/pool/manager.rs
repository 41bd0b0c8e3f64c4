//! The manager: one process-wide thread that creates every pool's threads
//! and runs every pool's idle timer (README.md: "Spare management"), so an
//! idle pool costs only its `min_idle` spares.
//!
//! A pool that wants threads (or starts an idle window) wakes the manager
//! through its core's notifier; the manager then steps every registered
//! pool (`Core::manager_step`), creating at most one thread per pool per
//! pass so that one pool's burst does not starve another's, until no pool
//! wants one. A pool whose thread the OS refused is retried after a back-off
//! that doubles from 1 ms to 1 s; its queued jobs wait for its existing
//! workers meanwhile. The thread starts with the first pool and exits when
//! the last one is gone.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::core::{ManagerStep, Overdue, StallEvent};
use super::service::idle;
use super::service::Service;
use super::worker::{start_worker, PoolRef};

/// First and last back-off after the OS refused a thread.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

struct Entry {
    pool: PoolRef,
    /// Current back-off and when the next creation may be tried.
    retry: Mutex<(Duration, Option<Instant>)>,
    /// The pool is shut down: drop the entry.
    done: AtomicBool,
}

fn service() -> &'static Service<Arc<Entry>> {
    static S: OnceLock<Service<Arc<Entry>>> = OnceLock::new();
    S.get_or_init(|| Service::new("threadward-mgr"))
}

/// Wakes the manager (a pool's notifier; also when a pool is dropped).
pub(crate) fn notify() {
    service().bell.ring();
}

/// Manages `pool` for as long as `alive` (owned by the `Pool`) lives.
///
/// # Errors
///
/// The OS error if the manager thread had to be started and could not be.
pub(crate) fn register(alive: &Arc<()>, pool: PoolRef) -> io::Result<()> {
    let entry = Arc::new(Entry {
        pool,
        retry: Mutex::new((BACKOFF_MIN, None)),
        done: AtomicBool::new(false),
    });
    service().register(alive, entry, run)
}

fn run() {
    let svc = service();
    let guard = svc.guard();
    let me = crate::record::current();
    loop {
        let Some(list) = svc.live(|e| !e.done.load(SeqCst)) else {
            std::mem::forget(guard); // `live` marked the thread gone
            return;
        };
        let now = Instant::now();
        let mut wake_at: Option<Instant> = None;
        let mut again = false;
        for e in &list {
            let mut retry = e.retry.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = retry.1 {
                if now < t {
                    wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
                    continue;
                }
                retry.1 = None;
            }
            match e.pool.core.manager_step(now) {
                ManagerStep::Create(no) => match start_worker(&e.pool, no) {
                    Ok(()) => {
                        retry.0 = BACKOFF_MIN;
                        again = true; // it may want more: another pass
                    }
                    Err(err) => {
                        e.pool.core.spawn_failed(no);
                        tracing::warn!(pool = %e.pool.name, error = %err, backoff = ?retry.0,
                            "OS refused a pool thread; queued jobs wait for existing workers");
                        let t = now + retry.0;
                        retry.1 = Some(t);
                        retry.0 = (retry.0 * 2).min(BACKOFF_MAX);
                        wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
                    }
                },
                ManagerStep::Wait(Some(t)) => wake_at = Some(wake_at.map_or(t, |w| w.min(t))),
                ManagerStep::Wait(None) => {}
                ManagerStep::Exit => e.done.store(true, SeqCst),
            }
            let (event, recheck) = e.pool.core.check_stall(now);
            if let Some(t) = recheck {
                wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            }
            report_stall(&e.pool.name, event);
            let (overdue, recheck) = e.pool.core.check_overdue(now);
            if let Some(t) = recheck {
                wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            }
            for o in overdue {
                report_overdue(&e.pool.name, &o);
            }
        }
        drop(list);
        if again {
            continue;
        }
        // A ring during the pass (a pool wants more) makes this return at
        // once: another pass.
        match wake_at {
            None => idle(&me, || svc.bell.sleep()),
            Some(t) => idle(&me, || {
                svc.bell.nap(t.saturating_duration_since(Instant::now()))
            }),
        }
    }
}

/// Says what `check_stall` saw: a stall once per episode (a warning and an
/// incident), and its end.
fn report_stall(pool: &str, event: Option<StallEvent>) {
    match event {
        Some(StallEvent::Began {
            waited,
            queued,
            threads,
            busy,
        }) => {
            tracing::warn!(pool, ?waited, queued, threads, busy,
                "pool stalled: jobs wait for a thread and max_threads is reached (raise max_threads, or stop the jobs that hold the threads)");
            crate::sync::incident(
                crate::sync::IncidentKind::PoolStalled,
                format!(
                    "pool {pool}: {queued} job(s) waited {waited:?} for a thread at max_threads ({threads} threads, {busy} busy)"
                ),
            );
        }
        Some(StallEvent::Ended(after)) => {
            tracing::info!(pool, ?after, "pool no longer stalled");
        }
        None => {}
    }
}

/// The watchdog's report of one job: once, with its worker's state.
fn report_overdue(pool: &str, o: &Overdue) {
    o.rec.set_overdue(o.job);
    let (state, for_) = o.rec.state();
    tracing::warn!(pool, worker = %o.rec.name, job = o.job, age = ?o.age, %state, in_state = ?for_,
        "pool job still running past the watchdog threshold");
}
