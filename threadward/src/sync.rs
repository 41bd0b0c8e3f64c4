//! One switch between `std` and `loom` primitives.
//!
//! The protocol modules (`stop`, the completion latch in `registry`, and the
//! pool's dispatch state) take their primitives from here, so that
//! `RUSTFLAGS="--cfg loom"` model-checks the same code that ships.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Locks `m`, ignoring poisoning: every critical section in this crate
/// leaves its data consistent before anything that can panic runs.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv`, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` for at most `dur`; returns the guard and whether it timed
/// out. Loom does not model time, so under loom a timed wait releases the
/// lock and takes it back, which lets the model run anything in between,
/// then reports a timeout: "the timer fired at an arbitrary point".
pub(crate) fn wait_timeout<'a, T>(
    m: &'a Mutex<T>,
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> (MutexGuard<'a, T>, bool) {
    #[cfg(loom)]
    {
        let _ = (cv, dur);
        drop(g);
        (lock(m), true)
    }
    #[cfg(not(loom))]
    {
        let _ = m;
        let (g, r) = cv.wait_timeout(g, dur).unwrap_or_else(|e| e.into_inner());
        (g, r.timed_out())
    }
}
