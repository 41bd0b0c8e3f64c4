//! One switch between `std` and `loom` primitives.
//!
//! The protocol modules (`stop`, the completion latch in `registry`, and the
//! pool's dispatch state) take their primitives from here, so that
//! `RUSTFLAGS="--cfg loom"` model-checks the same code that ships, and
//! `RUSTFLAGS="--cfg shuttle"` runs it under shuttle's random schedules.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(shuttle)]
pub(crate) use shuttle::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
#[cfg(shuttle)]
pub(crate) use shuttle::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(shuttle)]
pub(crate) use shuttle::thread;

#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(any(loom, shuttle)))]
pub(crate) use std::thread;

/// The pool's inbox (pool README: "Submit without the pool lock"): jobs
/// pushed under a lock of their own, held for a push or a swap only, and
/// taken all at once by whoever holds the pool lock. Its length is also
/// kept in an atomic, for the spinners' polls and the gate's fenced read.
/// (crossbeam-deque's `Injector` was tried first: its blocks of 63 slots
/// are allocations in the `malloc_consolidate` range, and a flood spent
/// more in malloc than the lock it saved; a swapped `Vec` keeps its
/// capacity, so a warm inbox reuses its buffers. The same type runs under
/// loom and shuttle.)
pub(crate) struct Inbox<T> {
    q: Mutex<Vec<T>>,
    len: AtomicUsize,
}

impl<T> Inbox<T> {
    pub(crate) fn new() -> Inbox<T> {
        Inbox {
            q: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Pushes `t`, running `enter` on it under the inbox's lock first (a
    /// taker that holds this lock after the push sees both).
    pub(crate) fn push(&self, t: T, enter: impl FnOnce(&T)) {
        let mut q = lock(&self.q);
        enter(&t);
        q.push(t);
        self.len.store(q.len(), Ordering::Relaxed);
    }

    /// Swaps the inbox's jobs into `into` (empty; its capacity becomes the
    /// inbox's), oldest first, and runs `then` on them before the inbox's
    /// lock is released: every push that finished before this call took
    /// the lock is there, and none happens until `then` returns.
    pub(crate) fn take_all_then<R>(
        &self,
        into: &mut Vec<T>,
        then: impl FnOnce(&mut Vec<T>) -> R,
    ) -> R {
        debug_assert!(into.is_empty());
        let mut q = lock(&self.q);
        std::mem::swap(&mut *q, into);
        self.len.store(0, Ordering::Relaxed);
        then(into)
    }

    /// Whether it is empty, without its lock (a fenced caller sees every
    /// push that preceded its fence).
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }
}

/// Text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

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

/// The instant `timeout` from now, or `None` when that is too far to
/// represent (`Duration::MAX` and the like): "no deadline".
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}

/// Waits on `cv` until `done` holds or `deadline` passes; returns the guard
/// and whether `done` holds. The one deadline loop of the crate: spurious
/// wake-ups and early timeouts re-check, `None` waits without a timer.
pub(crate) fn wait_until<'a, T>(
    m: &'a Mutex<T>,
    cv: &Condvar,
    mut g: MutexGuard<'a, T>,
    deadline: Option<std::time::Instant>,
    mut done: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&mut g) {
            return (g, true);
        }
        g = match deadline {
            None => wait(cv, g),
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return (g, false);
                }
                wait_timeout(m, cv, g, left).0
            }
        };
    }
}

/// What went wrong where no caller could be handed an error: logged
/// through `tracing`, and kept (the latest [`INCIDENTS_KEPT`]) for
/// [`registry::snapshot`](crate::registry::snapshot), so a program without
/// a tracing subscriber still sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Incident {
    /// What kind of event.
    pub kind: IncidentKind,
    /// Its details.
    pub message: String,
}

/// The kinds of [`Incident`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IncidentKind {
    /// A panic in user code the library runs on its own behalf (a stop
    /// callback, a waker, a detached job's or thread's value drop) was
    /// caught and contained.
    ContainedPanic,
    /// A `Pool` was dropped (not shut down) and some workers did not stop
    /// by its drop deadline.
    DroppedPoolStragglers,
    /// A `Thread` handle was dropped and its thread ended with an error
    /// (a panic) nobody joined.
    DroppedThreadError,
    /// The process-wide pool monitor could not start: blocked jobs are
    /// only compensated through the library's own waits and hints.
    NoMonitor,
    /// A pool's jobs waited for a thread at `max_threads`, with none free
    /// and none on its way, longer than its stall threshold (one per
    /// episode; also counted in `PoolStats::stalls`).
    PoolStalled,
    /// A pool began refusing jobs at capacity (`QueueFull`, `AtCapacity`;
    /// one per episode, until a job is accepted again; each refusal counts
    /// in `PoolStats::refused`).
    PoolRefusing,
}

/// How many incidents are kept (the oldest are dropped first).
pub const INCIDENTS_KEPT: usize = 64;

static INCIDENTS: std::sync::Mutex<(u64, std::collections::VecDeque<Incident>)> =
    std::sync::Mutex::new((0, std::collections::VecDeque::new()));

/// Keeps an incident (it is also logged by the caller).
pub(crate) fn incident(kind: IncidentKind, message: String) {
    let mut g = INCIDENTS.lock().unwrap_or_else(|e| e.into_inner());
    g.0 += 1;
    if g.1.len() == INCIDENTS_KEPT {
        g.1.pop_front();
    }
    g.1.push_back(Incident { kind, message });
}

/// The incidents kept, and how many there were in all.
pub(crate) fn incidents() -> (Vec<Incident>, u64) {
    let g = INCIDENTS.lock().unwrap_or_else(|e| e.into_inner());
    (g.1.iter().cloned().collect(), g.0)
}

/// Runs user code (a closure's or a value's drop, a waker, a callback)
/// where an unwinding panic must not escape into the library's
/// bookkeeping: the panic is caught and logged, and its payload dropped
/// under the same guard (a payload may itself panic on drop).
pub(crate) fn contain<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            let message = panic_message(&*payload);
            tracing::warn!(%message, "panic in {what} contained");
            incident(
                IncidentKind::ContainedPanic,
                format!("panic in {what} contained: {message}"),
            );
            drop_payload(payload);
            None
        }
    }
}

/// Drops a panic payload; a payload whose drop panics is leaked instead
/// (the second payload could do the same, without end).
pub(crate) fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// A one-shot "finished" flag that any number of threads can wait on.
pub(crate) struct Latch {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    pub(crate) fn new() -> Latch {
        Latch {
            done: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn set(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        *lock(&self.done)
    }

    pub(crate) fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits until the latch is set or `deadline` passes; returns whether
    /// it is set.
    pub(crate) fn wait_deadline(&self, deadline: Option<std::time::Instant>) -> bool {
        wait_until(&self.done, &self.cv, lock(&self.done), deadline, |d| *d).1
    }

    /// Waits up to `timeout` (any `Duration`, `MAX` included).
    pub(crate) fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Wakes the waiters without setting the latch (they re-check their
    /// own condition, see `wait_or`).
    pub(crate) fn wake(&self) {
        let _d = lock(&self.done);
        self.cv.notify_all();
    }

    /// Waits until the latch is set or `also()` holds (checked on every
    /// wake-up: whoever makes it true must call `wake`); returns whether
    /// the latch is set.
    pub(crate) fn wait_or(&self, mut also: impl FnMut() -> bool) -> bool {
        let (d, _) = wait_until(&self.done, &self.cv, lock(&self.done), None, |d| {
            *d || also()
        });
        *d
    }
}

/// How a thread that sleeps until there is work is woken without a lost
/// wake-up, and without costing the producers more than one load while it
/// is awake (the monitor's protocol).
///
/// The sleeper [`announce`](Doorbell::announce)s its sleep, looks for work
/// once more, and then [`sleep`](Doorbell::sleep)s unless it found some
/// ([`cancel`](Doorbell::cancel)). A producer makes its work visible first,
/// then [`ring_if_sleeping`](Doorbell::ring_if_sleeping): work made before
/// the announcement is seen by the sleeper's second look; work made after
/// it sees the announcement and rings. A ring is remembered until the
/// sleeper takes it.
pub(crate) struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
    sleeping: AtomicBool,
}

impl Doorbell {
    pub(crate) fn new() -> Doorbell {
        Doorbell {
            rung: Mutex::new(false),
            cv: Condvar::new(),
            sleeping: AtomicBool::new(false),
        }
    }

    /// The sleeper, before its last look for work.
    pub(crate) fn announce(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// The sleeper found work on its last look.
    pub(crate) fn cancel(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// The sleeper: waits until rung (at once if rung since the last time).
    pub(crate) fn sleep(&self) {
        let mut rung = lock(&self.rung);
        while !*rung {
            rung = wait(&self.cv, rung);
        }
        *rung = false;
        drop(rung);
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// The sleeper, between ticks: waits up to `d` or until rung.
    pub(crate) fn nap(&self, d: std::time::Duration) {
        let rung = lock(&self.rung);
        let (mut rung, _) = if *rung {
            (rung, false)
        } else {
            wait_timeout(&self.rung, &self.cv, rung, d)
        };
        *rung = false;
    }

    /// A producer, after making work visible: rings if the sleeper sleeps
    /// or is about to (one load otherwise).
    pub(crate) fn ring_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Rings whatever the sleeper does (it looks again).
    pub(crate) fn ring(&self) {
        *lock(&self.rung) = true;
        self.cv.notify_one();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// The monitor's wake-up: a pool saturating while the monitor decides
    /// to sleep must wake it. The work flag sits behind a mutex, as the
    /// pools' state does behind the pool lock: the lock orders the
    /// announcement against the producer's look at it. Without the
    /// announcement (or without the second look) the sleeper can sleep
    /// through the only ring (loom: deadlock).
    #[test]
    fn loom_doorbell_never_loses_a_ring() {
        loom::model(|| {
            let bell = Arc::new(Doorbell::new());
            let work = Arc::new(Mutex::new(false));
            let (b, w) = (bell.clone(), work.clone());
            let producer = thread::spawn(move || {
                *lock(&w) = true;
                b.ring_if_sleeping();
            });
            while !*lock(&work) {
                bell.announce();
                if *lock(&work) {
                    bell.cancel();
                    break;
                }
                bell.sleep();
            }
            producer.join().unwrap();
        });
    }
}
