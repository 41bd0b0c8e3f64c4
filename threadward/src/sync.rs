//! One switch between `std` and `loom` primitives.
//!
//! The protocol modules (`stop`, the completion latch in `registry`, and the
//! pool's dispatch state) take their primitives from here, so that
//! `RUSTFLAGS="--cfg loom"` model-checks the same code that ships, and
//! `RUSTFLAGS="--cfg shuttle"` runs it under shuttle's random schedules.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(shuttle)]
pub(crate) use shuttle::sync::atomic::{AtomicBool, Ordering};
#[cfg(shuttle)]
pub(crate) use shuttle::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(shuttle)]
pub(crate) use shuttle::thread;

#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(any(loom, shuttle)))]
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
/// out. Loom and shuttle do not model time, so under them a timed wait
/// releases the lock and takes it back, which lets the checker run anything
/// in between, then reports a timeout: "the timer fired at an arbitrary
/// point".
pub(crate) fn wait_timeout<'a, T>(
    m: &'a Mutex<T>,
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> (MutexGuard<'a, T>, bool) {
    #[cfg(any(loom, shuttle))]
    {
        let _ = (cv, dur);
        drop(g);
        (lock(m), true)
    }
    #[cfg(not(any(loom, shuttle)))]
    {
        let _ = m;
        let (g, r) = cv.wait_timeout(g, dur).unwrap_or_else(|e| e.into_inner());
        (g, r.timed_out())
    }
}
