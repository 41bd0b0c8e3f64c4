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
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::core::ManagerStep;
use super::worker::{start_worker, PoolRef};

/// First and last back-off after the OS refused a thread.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

struct Entry {
    /// Dies with the `Pool`.
    alive: Weak<()>,
    pool: PoolRef,
    /// Current back-off and when the next creation may be tried.
    retry: Mutex<(Duration, Option<Instant>)>,
    /// The pool is shut down: drop the entry.
    done: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    pools: Vec<Arc<Entry>>,
    /// A pool asked for the manager since its last pass started.
    pending: bool,
    running: bool,
}

struct Manager {
    st: Mutex<State>,
    cv: Condvar,
}

fn manager() -> &'static Manager {
    static M: std::sync::OnceLock<Manager> = std::sync::OnceLock::new();
    M.get_or_init(|| Manager {
        st: Mutex::new(State::default()),
        cv: Condvar::new(),
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    manager().st.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes the manager (a pool's notifier; also when a pool is dropped).
pub(crate) fn notify() {
    lock().pending = true;
    manager().cv.notify_one();
}

/// Manages `pool` for as long as `alive` (owned by the `Pool`) lives.
///
/// # Errors
///
/// The OS error if the manager thread had to be started and could not be.
pub(crate) fn register(alive: &Arc<()>, pool: PoolRef) -> io::Result<()> {
    let mut st = lock();
    st.pools.retain(|e| e.alive.strong_count() > 0);
    st.pools.push(Arc::new(Entry {
        alive: Arc::downgrade(alive),
        pool,
        retry: Mutex::new((BACKOFF_MIN, None)),
        done: std::sync::atomic::AtomicBool::new(false),
    }));
    st.pending = true;
    if !st.running {
        std::thread::Builder::new()
            .name("threadward-mgr".into())
            .stack_size(128 * 1024)
            .spawn(run)?;
        st.running = true;
    }
    drop(st);
    manager().cv.notify_one();
    Ok(())
}

/// Marks the thread gone however it ends, so the next pool starts a new
/// one (the loop runs no user code, but an unwinding thread must not leave
/// the pools without it).
struct Gone;

impl Drop for Gone {
    fn drop(&mut self) {
        lock().running = false;
    }
}

fn run() {
    let gone = Gone;
    use std::sync::atomic::Ordering::SeqCst;
    let m = manager();
    loop {
        let list = {
            let mut st = lock();
            st.pools
                .retain(|e| e.alive.strong_count() > 0 && !e.done.load(SeqCst));
            if st.pools.is_empty() {
                st.running = false;
                // A normal exit, under the lock: a pool registered after
                // this starts a new thread, which `Gone` must not undo.
                std::mem::forget(gone);
                return;
            }
            st.pending = false;
            st.pools.clone()
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
        }
        drop(list);
        if again {
            continue;
        }
        let st = lock();
        if st.pending {
            continue;
        }
        match wake_at {
            None => drop(m.cv.wait(st).unwrap_or_else(|e| e.into_inner())),
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                drop(
                    m.cv.wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
        }
    }
}
