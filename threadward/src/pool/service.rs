//! A process-wide service thread for every pool: the manager and the
//! monitor are each one thread that serves all live pools, started with the
//! first pool that registers and gone with the last one.
//!
//! The service keeps its pools as entries that live as long as their `Pool`
//! (a weak handle on the pool's `alive` token); the thread wakes on its
//! [`Doorbell`], takes the live entries, and ends when none is left. Its
//! `running` flag is cleared under the registry's lock when it ends
//! normally, and by a drop guard if it ever unwinds, so the next pool always
//! starts a new thread.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::sync::Doorbell;

struct Registry<E> {
    entries: Vec<(Weak<()>, E)>,
    running: bool,
}

/// One process-wide service thread and the pools it serves.
pub(crate) struct Service<E> {
    name: &'static str,
    reg: Mutex<Registry<E>>,
    /// Wakes the thread (see `sync::Doorbell` for the protocol).
    pub(crate) bell: Doorbell,
}

impl<E: Clone> Service<E> {
    pub(crate) fn new(name: &'static str) -> Service<E> {
        Service {
            name,
            reg: Mutex::new(Registry {
                entries: Vec::new(),
                running: false,
            }),
            bell: Doorbell::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry<E>> {
        self.reg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `entry` for as long as `alive` (owned by the `Pool`) lives,
    /// starting the thread (running `run`) if it is not running, then rings.
    ///
    /// # Errors
    ///
    /// The OS error if the thread had to be started and could not be.
    pub(crate) fn register(&'static self, alive: &Arc<()>, entry: E, run: fn()) -> io::Result<()> {
        let mut reg = self.lock();
        reg.entries.retain(|(a, _)| a.strong_count() > 0);
        reg.entries.push((Arc::downgrade(alive), entry));
        if !reg.running {
            // A registered thread: the snapshot shows it (kind
            // `PoolService`) and it counts against the thread budget.
            crate::thread::spawn_service(self.name, run)?;
            reg.running = true;
        }
        drop(reg);
        self.bell.ring();
        Ok(())
    }

    /// The thread's guard: marks it gone if it unwinds. On a normal end
    /// (`live` said `None`) the thread forgets it: `live` already marked
    /// it gone, under the lock, and a thread started after that must not
    /// be marked gone by this one.
    pub(crate) fn guard(&'static self) -> Running<E> {
        Running { service: self }
    }

    /// The live entries that `keep` accepts (the others are dropped), or
    /// `None` when none is left: the thread is then marked gone, under the
    /// lock, and must end (a pool registered after this starts a new one).
    pub(crate) fn live(&self, keep: impl Fn(&E) -> bool) -> Option<Vec<E>> {
        let mut reg = self.lock();
        reg.entries.retain(|(a, e)| a.strong_count() > 0 && keep(e));
        if reg.entries.is_empty() {
            reg.running = false;
            return None;
        }
        Some(reg.entries.iter().map(|(_, e)| e.clone()).collect())
    }
}

/// Held by a service thread while it runs.
pub(crate) struct Running<E: Clone + 'static> {
    service: &'static Service<E>,
}

impl<E: Clone + 'static> Drop for Running<E> {
    fn drop(&mut self) {
        self.service.lock().running = false;
    }
}

/// The service thread `me` waits in `wait` for its bell: the snapshot
/// shows it idle meanwhile (as a parked worker), not running.
pub(crate) fn idle(me: &Option<std::sync::Arc<crate::record::ThreadRecord>>, wait: impl FnOnce()) {
    use crate::record::ThreadState;
    if let Some(me) = me {
        me.set_state(ThreadState::Idle);
    }
    wait();
    if let Some(me) = me {
        me.set_state(ThreadState::Running);
    }
}
