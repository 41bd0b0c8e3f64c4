//! Stop signalling: [`StopSource`], [`StopToken`], [`StopCallback`], [`Stopped`].
//!
//! # Why stop tokens
//!
//! A thread cannot be killed safely; it can only be *asked* to stop and then
//! observe the request. A [`StopSource`] is the asking side, a [`StopToken`]
//! the observing side; clones share one stop state. A request is a single
//! atomic swap, so checking [`StopToken::stop_requested`] in a hot loop costs a
//! load. Code blocked somewhere the token cannot see registers a callback with
//! [`StopToken::on_stop`] that unblocks it (closes a socket, notifies a
//! condition variable, writes an eventfd); every wait this crate offers does
//! exactly that internally.
//!
//! # Protocol
//!
//! * `stopped` (atomic) is set exactly once, by the `request_stop` call that
//!   wins the swap; that call then runs every registered callback.
//! * The callback list, and the identity of the callback currently running,
//!   are guarded by one mutex per stop state. Callbacks run *outside* it.
//! * `on_stop` registers under the mutex only if `stopped` is still false
//!   (checked under the mutex). The stopper sets `stopped` before it first
//!   takes the mutex, so a registration either lands in the list before the
//!   stopper drains it, or sees `stopped` and runs the callback at once.
//! * Dropping a [`StopCallback`] removes it from the list if it is still
//!   there; if it is running on another thread the drop waits on the condvar
//!   until it finished; if it is running on the dropping thread (a callback
//!   dropping its own guard) the drop returns at once.

use std::fmt;

use crate::sync::{self, thread, Arc, AtomicBool, Condvar, Mutex, Ordering};

type Callback = Box<dyn FnOnce() + Send + 'static>;

struct Inner {
    stopped: AtomicBool,
    callbacks: Mutex<Callbacks>,
    /// Notified each time a running callback finishes.
    finished: Condvar,
}

#[derive(Default)]
struct Callbacks {
    next_id: u64,
    list: Vec<(u64, Callback)>,
    /// The callback being run by the stopper, and the thread running it.
    running: Option<(u64, thread::ThreadId)>,
    /// Guards waiting in `drop` for a running callback: `finished` is
    /// notified only if any (keeps a syscall off every stop).
    waiters: usize,
}

impl Inner {
    fn new() -> Arc<Inner> {
        Arc::new(Inner {
            stopped: AtomicBool::new(false),
            callbacks: Mutex::new(Callbacks::default()),
            finished: Condvar::new(),
        })
    }

    fn request_stop(&self) -> bool {
        if !self.mark() {
            return false;
        }
        self.run_callbacks();
        true
    }

    /// Sets the stop flag (runs no user code); whether this call set it.
    fn mark(&self) -> bool {
        !self.stopped.swap(true, Ordering::SeqCst)
    }

    /// Runs the registered callbacks, once each (after `mark`).
    fn run_callbacks(&self) {
        let me = thread::current().id();
        loop {
            let mut cbs = sync::lock(&self.callbacks);
            let Some((id, f)) = cbs.list.pop() else {
                break;
            };
            cbs.running = Some((id, me));
            drop(cbs);
            // A panicking callback is contained: the others still run and
            // the stopper (often a shutdown with a deadline) carries on.
            sync::contain("a stop callback", f);
            let mut cbs = sync::lock(&self.callbacks);
            cbs.running = None;
            let wake = cbs.waiters > 0;
            drop(cbs);
            if wake {
                self.finished.notify_all();
            }
        }
    }
}

/// The requesting side of a stop state.
///
/// Clones share one state: a stop requested through any clone is seen by
/// every [`StopToken`] made from any of them.
///
/// # Examples
///
/// ```
/// use threadward::StopSource;
///
/// let source = StopSource::new();
/// let token = source.token();
/// assert!(!token.stop_requested());
/// assert!(source.request_stop()); // this call made the request
/// assert!(!source.request_stop()); // already requested
/// assert!(token.stop_requested());
/// ```
#[derive(Clone)]
pub struct StopSource {
    inner: Arc<Inner>,
    /// A child's registration on its parent, shared by every handle of
    /// the child: the last one dropped deregisters it (no leak on a
    /// long-lived parent).
    link: Option<Arc<StopCallback>>,
}

impl StopSource {
    /// Creates a new stop state with no stop requested.
    ///
    /// # Examples
    ///
    /// ```
    /// let source = threadward::StopSource::new();
    /// assert!(!source.stop_requested());
    /// ```
    pub fn new() -> StopSource {
        StopSource {
            inner: Inner::new(),
            link: None,
        }
    }

    /// A new stop state that is also stopped when this one is (a stop of
    /// the child leaves the parent alone): tokio-util's
    /// `CancellationToken::child_token`. Same as `self.token().child()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let parent = threadward::StopSource::new();
    /// let child = parent.child();
    /// child.request_stop();
    /// assert!(!parent.stop_requested());
    /// let other = parent.child();
    /// parent.request_stop();
    /// assert!(other.stop_requested());
    /// ```
    pub fn child(&self) -> StopSource {
        self.token().child()
    }

    /// Returns a token observing this stop state.
    ///
    /// # Examples
    ///
    /// ```
    /// let source = threadward::StopSource::new();
    /// let token = source.token();
    /// source.request_stop();
    /// assert!(token.stop_requested());
    /// ```
    pub fn token(&self) -> StopToken {
        StopToken {
            inner: self.inner.clone(),
            link: self.link.clone(),
        }
    }

    /// Requests a stop and runs every registered callback on this thread.
    ///
    /// Returns `true` only for the call that made the request; every later
    /// call (from any clone, on any thread) returns `false` at once.
    ///
    /// A callback that panics is contained: the panic is logged (through
    /// `tracing`), the remaining callbacks still run, and this call returns
    /// normally. A callback that blocks delays this call; the deadline-taking
    /// calls of this crate (`Thread::stop_timeout`, `Pool::shutdown`) run
    /// the requests where a slow callback cannot hold them past their
    /// deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// let source = threadward::StopSource::new();
    /// assert!(source.request_stop());
    /// assert!(!source.clone().request_stop());
    /// ```
    pub fn request_stop(&self) -> bool {
        self.inner.request_stop()
    }

    /// Whether a stop has been requested.
    ///
    /// # Examples
    ///
    /// ```
    /// let source = threadward::StopSource::new();
    /// assert!(!source.stop_requested());
    /// ```
    pub fn stop_requested(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// The first half of [`request_stop`](Self::request_stop): sets the
    /// flag, runs no user code. Whether this call made the request; if so
    /// the caller must call [`run_stop_callbacks`](Self::run_stop_callbacks).
    pub(crate) fn mark_stopped(&self) -> bool {
        self.inner.mark()
    }

    /// The second half: runs the callbacks registered so far.
    pub(crate) fn run_stop_callbacks(&self) {
        self.inner.run_callbacks();
    }
}

/// A stop state made on first use (a pool job's: most jobs never look at
/// theirs, and a tiny job should not pay an allocation for it). Every
/// reader goes through [`source`](Self::source), which makes it once
/// (`OnceLock`), so a stop requested from outside and the job's own
/// `Context` always meet in one state. Boxed: 16 bytes in the job's cell
/// instead of 24 (a cell under 128 bytes stays in malloc's fastest bins).
#[derive(Default)]
pub(crate) struct LazyStop(std::sync::OnceLock<Box<StopSource>>);

impl LazyStop {
    /// A lazy stop that already has its state (a child of an outside token).
    pub(crate) fn ready(source: StopSource) -> LazyStop {
        LazyStop(std::sync::OnceLock::from(Box::new(source)))
    }

    /// The stop state, made now if nothing made it yet.
    pub(crate) fn source(&self) -> &StopSource {
        self.0.get_or_init(|| Box::new(StopSource::new()))
    }

    /// Whether a stop was requested; makes nothing (a state nobody made
    /// was never stopped).
    pub(crate) fn requested(&self) -> bool {
        self.0.get().is_some_and(|s| s.stop_requested())
    }
}

/// Something that owns a [`LazyStop`] (a pool job's one allocation): what
/// the job's `Context` and its worker's slot reach it through.
pub(crate) trait HasStop: Send + Sync {
    fn stop(&self) -> &LazyStop;
}

impl Default for StopSource {
    fn default() -> Self {
        StopSource::new()
    }
}

impl fmt::Debug for StopSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopSource")
            .field("stop_requested", &self.stop_requested())
            .finish()
    }
}

/// The observing side of a stop state.
///
/// # Examples
///
/// ```
/// use threadward::StopSource;
///
/// let source = StopSource::new();
/// let token = source.token();
/// let worker = std::thread::spawn(move || {
///     let mut spins = 0u64;
///     while !token.stop_requested() {
///         spins += 1;
///         std::thread::yield_now();
///     }
///     spins
/// });
/// source.request_stop();
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct StopToken {
    inner: Arc<Inner>,
    /// As [`StopSource`]'s: keeps a child linked while any handle lives
    /// (held for its drop).
    #[allow(dead_code)]
    link: Option<Arc<StopCallback>>,
}

impl StopToken {
    /// Whether a stop has been requested.
    ///
    /// # Examples
    ///
    /// ```
    /// let source = threadward::StopSource::new();
    /// assert!(!source.token().stop_requested());
    /// ```
    pub fn stop_requested(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Registers `f` to run once when a stop is requested.
    ///
    /// `f` runs exactly once: on the thread that requests the stop, or right
    /// here on this thread if the stop was already requested. A panic in `f`
    /// is contained and logged; it never reaches the stopper. Dropping the
    /// returned [`StopCallback`] deregisters `f`; see its docs for what that
    /// drop waits for.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use threadward::StopSource;
    ///
    /// let source = StopSource::new();
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// let r = runs.clone();
    /// let _guard = source.token().on_stop(move || {
    ///     r.fetch_add(1, Ordering::SeqCst);
    /// });
    /// source.request_stop();
    /// source.request_stop();
    /// assert_eq!(runs.load(Ordering::SeqCst), 1);
    /// ```
    pub fn on_stop<F>(&self, f: F) -> StopCallback
    where
        F: FnOnce() + Send + 'static,
    {
        let mut cbs = sync::lock(&self.inner.callbacks);
        if self.inner.stopped.load(Ordering::SeqCst) {
            drop(cbs);
            sync::contain("a stop callback", f);
            return StopCallback {
                reg: None,
                no_wait: false,
            };
        }
        let id = cbs.next_id;
        cbs.next_id += 1;
        cbs.list.push((id, Box::new(f)));
        StopCallback {
            reg: Some((self.inner.clone(), id)),
            no_wait: false,
        }
    }

    /// A new stop state stopped when this one is (see
    /// [`StopSource::child`]). The link lasts while any handle of the
    /// child (source or token) lives; if this state is already stopped,
    /// the child starts stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// // Per-connection stops that a service-wide stop also ends.
    /// let conn = service.token().child();
    /// let conn_token = conn.token();
    /// drop(conn); // the token keeps the link
    /// service.request_stop();
    /// assert!(conn_token.stop_requested());
    /// ```
    pub fn child(&self) -> StopSource {
        let inner = Inner::new();
        let c = inner.clone();
        let mut guard = self.on_stop(move || {
            c.request_stop();
        });
        guard.no_wait = true;
        StopSource {
            inner,
            link: Some(Arc::new(guard)),
        }
    }

    /// Blocks until a stop is requested: for code outside managed threads
    /// and pool jobs (a `main` waiting for its signal, a foreign thread).
    /// Returns at once if the stop was already requested; otherwise the
    /// stopping thread wakes it directly (no polling). A token nobody waits
    /// on costs `request_stop` nothing.
    ///
    /// Inside a managed thread or a pool job, use the
    /// [`Context`](crate::Context) waits instead: they also end on the
    /// caller's *own* stop, and a pool job's wait tells its pool the job
    /// blocks (so another job runs meanwhile), which this wait does not.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let token = service.token();
    /// let stopper = std::thread::spawn(move || service.request_stop());
    /// token.wait(); // e.g. main, until a signal stops the service
    /// assert!(token.stop_requested());
    /// stopper.join().unwrap();
    /// ```
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// [`wait`](Self::wait) for at most `timeout` (any `Duration`, `MAX`
    /// included); whether the stop was requested.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let service = threadward::StopSource::new();
    /// assert!(!service.token().wait_timeout(Duration::from_millis(1)));
    /// service.request_stop();
    /// assert!(service.token().wait_timeout(Duration::ZERO));
    /// ```
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        self.wait_deadline(sync::deadline_after(timeout))
    }

    /// Waits until the stop or `deadline`; whether the stop came.
    fn wait_deadline(&self, deadline: Option<std::time::Instant>) -> bool {
        if self.stop_requested() {
            return true;
        }
        let latch = Arc::new(sync::Latch::new());
        let l = latch.clone();
        // Runs at once if the stop came meanwhile; dropped (deregistered)
        // when this returns.
        let _wake = self.on_stop(move || l.set());
        latch.wait_deadline(deadline) || self.stop_requested()
    }

    /// A future that completes when the stop is requested: await a stop
    /// from async code without any runtime dependency (the waker is woken
    /// from the stopping thread).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::sync::Arc;
    /// use std::task::{Context, Wake, Waker};
    ///
    /// struct Noop;
    /// impl Wake for Noop {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    /// let waker = Waker::from(Arc::new(Noop));
    /// let source = threadward::StopSource::new();
    /// let mut stopped = pin!(source.token().stopped());
    /// let mut cx = Context::from_waker(&waker);
    /// assert!(stopped.as_mut().poll(&mut cx).is_pending());
    /// source.request_stop();
    /// assert!(stopped.as_mut().poll(&mut cx).is_ready());
    /// ```
    pub fn stopped(&self) -> StopFuture {
        StopFuture {
            token: self.clone(),
            waker: std::sync::Arc::new(std::sync::Mutex::new(None)),
            guard: None,
        }
    }
}

impl fmt::Debug for StopToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopToken")
            .field("stop_requested", &self.stop_requested())
            .finish()
    }
}

/// Completes when its token's stop is requested; made by
/// [`StopToken::stopped`].
#[must_use = "futures do nothing unless polled"]
pub struct StopFuture {
    token: StopToken,
    /// Plain std types: the callback holds only a `Weak` to the slot, so
    /// a waker that owns the task (which owns this future) is no cycle.
    waker: std::sync::Arc<std::sync::Mutex<Option<std::task::Waker>>>,
    guard: Option<StopCallback>,
}

impl std::future::Future for StopFuture {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.token.stop_requested() {
            return std::task::Poll::Ready(());
        }
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.guard.is_none() {
            let slot = std::sync::Arc::downgrade(&self.waker);
            // Runs at once if the stop came meanwhile: the wake below.
            let guard = self.token.on_stop(move || {
                let waker = slot
                    .upgrade()
                    .and_then(|s| s.lock().unwrap_or_else(|e| e.into_inner()).take());
                if let Some(w) = waker {
                    w.wake();
                }
            });
            self.guard = Some(guard);
        }
        if self.token.stop_requested() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

impl fmt::Debug for StopFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopFuture")
            .field("stop_requested", &self.token.stop_requested())
            .finish()
    }
}

/// Guard of a callback registered with [`StopToken::on_stop`].
///
/// Dropping it deregisters the callback:
/// * not yet run: it never runs (and is dropped here);
/// * running on another thread: the drop waits until it returned, so after
///   the drop nothing the callback borrows is in use;
/// * running on this thread (the callback dropped its own guard): returns at
///   once instead of deadlocking;
/// * already run: nothing to do.
///
/// # Examples
///
/// ```
/// use threadward::StopSource;
///
/// let source = StopSource::new();
/// let guard = source.token().on_stop(|| panic!("deregistered, never runs"));
/// drop(guard);
/// source.request_stop();
/// ```
#[must_use = "dropping the guard deregisters the callback"]
pub struct StopCallback {
    reg: Option<(Arc<Inner>, u64)>,
    /// A child's link: its callback only owns the child's state, so its
    /// drop need not (and must not: the child's callbacks may wait for
    /// the dropper) wait for it to finish running.
    no_wait: bool,
}

impl Drop for StopCallback {
    fn drop(&mut self) {
        let Some((inner, id)) = self.reg.take() else {
            return;
        };
        let mut cbs = sync::lock(&inner.callbacks);
        if let Some(pos) = cbs.list.iter().position(|(i, _)| *i == id) {
            let f = cbs.list.swap_remove(pos);
            drop(cbs);
            drop(f);
            return;
        }
        if self.no_wait {
            return;
        }
        let me = thread::current().id();
        while let Some((running, on)) = cbs.running {
            if running != id || on == me {
                break;
            }
            cbs.waiters += 1;
            cbs = sync::wait(&inner.finished, cbs);
            cbs.waiters -= 1;
        }
    }
}

impl fmt::Debug for StopCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopCallback")
            .field("registered", &self.reg.is_some())
            .finish()
    }
}

/// The error every stop-aware wait returns when its stop was requested.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let t = threadward::spawn("sleeper", |cx| cx.sleep(Duration::from_secs(3600))).unwrap();
/// assert_eq!(t.stop().unwrap(), Err(threadward::Stopped));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, thiserror::Error)]
#[error("stop requested")]
pub struct Stopped;

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Registration racing a stop: the callback runs exactly once, whoever wins.
    #[test]
    fn loom_on_stop_vs_request_runs_once() {
        loom::model(|| {
            let source = StopSource::new();
            let token = source.token();
            let runs = Arc::new(AtomicUsize::new(0));
            let r = runs.clone();
            let t = thread::spawn(move || {
                let r2 = r.clone();
                token.on_stop(move || {
                    r2.fetch_add(1, Ordering::SeqCst);
                })
            });
            source.request_stop();
            let guard = t.join().unwrap(); // registered until after the stop
            drop(guard);
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }

    /// A parent's stop racing the drop of a child's last handle: no
    /// deadlock (the drop waits only for a running link callback, which
    /// does not wait for the dropper), and a child still held when the
    /// parent stopped is stopped, its own callback run exactly once.
    #[test]
    fn loom_parent_stop_vs_child_drop() {
        loom::model(|| {
            let parent = StopSource::new();
            let kept = parent.child();
            let runs = Arc::new(AtomicUsize::new(0));
            let r = runs.clone();
            let _g = kept.token().on_stop(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            let dropped = parent.child();
            let t = thread::spawn(move || drop(dropped));
            parent.request_stop();
            t.join().unwrap();
            assert!(kept.stop_requested());
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }

    /// A child made while the parent is being stopped is stopped either by
    /// the parent's stop or at creation, never missed.
    #[test]
    fn loom_child_made_during_parent_stop_is_stopped() {
        loom::model(|| {
            let parent = StopSource::new();
            let p2 = parent.clone();
            let t = thread::spawn(move || p2.request_stop());
            let child = parent.child();
            t.join().unwrap();
            assert!(child.stop_requested());
        });
    }

    /// Two concurrent stoppers: exactly one wins, the callback runs once.
    #[test]
    fn loom_concurrent_request_stop_one_winner() {
        loom::model(|| {
            let source = StopSource::new();
            let runs = Arc::new(AtomicUsize::new(0));
            let r = runs.clone();
            let _g = source.token().on_stop(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            let s2 = source.clone();
            let t = thread::spawn(move || s2.request_stop());
            let a = source.request_stop();
            let b = t.join().unwrap();
            assert!(a ^ b, "exactly one request wins");
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }

    /// Dropping the guard while the stopper runs the callback waits for it:
    /// after the drop, the callback has either never run or fully finished.
    #[test]
    fn loom_drop_guard_waits_for_running_callback() {
        loom::model(|| {
            let source = StopSource::new();
            let state = Arc::new(AtomicUsize::new(0)); // 0 never, 1 started, 2 done
            let s = state.clone();
            let guard = source.token().on_stop(move || {
                s.store(1, Ordering::SeqCst);
                s.store(2, Ordering::SeqCst);
            });
            let s2 = source.clone();
            let t = thread::spawn(move || s2.request_stop());
            drop(guard);
            let seen = state.load(Ordering::SeqCst);
            assert!(seen == 0 || seen == 2, "saw a half-run callback: {seen}");
            t.join().unwrap();
        });
    }

    /// A callback that drops its own guard must not deadlock.
    #[test]
    fn loom_drop_guard_inside_callback() {
        loom::model(|| {
            let source = StopSource::new();
            let slot: Arc<Mutex<Option<StopCallback>>> = Arc::new(Mutex::new(None));
            let s = slot.clone();
            let guard = source.token().on_stop(move || {
                let g = sync::lock(&s).take();
                drop(g);
            });
            *sync::lock(&slot) = Some(guard);
            let s2 = source.clone();
            let t = thread::spawn(move || s2.request_stop());
            t.join().unwrap();
            // If the stopper won, the slot is empty; if not, drop it here.
            let g = sync::lock(&slot).take();
            drop(g);
        });
    }
}
