use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::record::{ThreadId, ThreadRecord};
use crate::sync;
use crate::thread::Context;
use crate::thread::ThreadError;

/// A cloneable handle that stops, pauses and waits on one managed thread.
///
/// Any number of threads may hold a `Stopper` to the same thread and call
/// any method at once: a stop is an atomic swap plus the thread's own wake
/// callbacks, and each waiter sleeps on the thread's own latch, never on a
/// global lock. A `Stopper` of a thread that already exited stays valid:
/// `request_stop` is harmless (it records the request, `true` for the
/// first one, and has nothing left to wake), `wait` returns at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let t = threadward::spawn("stoppable", |cx| {
///     while !cx.should_stop() {
///         let _ = cx.sleep(Duration::from_millis(10));
///     }
/// })
/// .unwrap();
/// let stoppers: Vec<_> = (0..4).map(|_| t.stopper()).collect();
/// std::thread::scope(|s| {
///     for st in &stoppers {
///         s.spawn(move || {
///             st.request_stop();
///             st.wait().unwrap();
///         });
///     }
/// });
/// assert!(t.is_finished());
/// t.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Stopper {
    rec: Arc<ThreadRecord>,
}

impl Stopper {
    pub(crate) fn from_record(rec: Arc<ThreadRecord>) -> Stopper {
        Stopper { rec }
    }

    /// The record this handle shares.
    /// Waits until the thread finished (true) or `cx`'s stop is requested
    /// (false).
    pub(crate) fn finished_or_stop(&self, cx: &Context) -> bool {
        let rec = self.rec.clone();
        let _wake = cx.token().on_stop(move || rec.finished.wake());
        let token = cx.token().clone();
        cx.blocking(|| self.rec.finished.wait_or(|| token.stop_requested()))
    }

    /// Waits until the thread has finished its body (`true`), or until the
    /// *caller's* stop (`cx`) is requested (`false`); from the thread
    /// itself, `false` at once (it cannot finish while waiting for
    /// itself).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("short", |_| ()).unwrap();
    /// let st = t.stopper();
    /// let watcher = threadward::spawn("watch", move |cx| st.wait_finished(cx)).unwrap();
    /// assert!(watcher.join().unwrap());
    /// t.join().unwrap();
    /// ```
    pub fn wait_finished(&self, cx: &Context) -> bool {
        !self.rec.is_current() && self.finished_or_stop(cx)
    }

    pub(crate) fn record(&self) -> &ThreadRecord {
        &self.rec
    }

    /// The thread's id.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("id", |_| ()).unwrap();
    /// assert_eq!(t.stopper().id(), t.id());
    /// ```
    pub fn id(&self) -> ThreadId {
        self.rec.id
    }

    /// The thread's full name.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("named", |_| ()).unwrap();
    /// assert_eq!(t.stopper().name(), "named");
    /// ```
    pub fn name(&self) -> &str {
        &self.rec.name
    }

    /// Requests the thread to stop and wakes it out of any stop-aware wait.
    ///
    /// Returns `true` only for the call that made the request.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("s", |cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// let st = t.stopper();
    /// assert!(st.request_stop());
    /// assert!(!st.request_stop());
    /// assert!(t.join().unwrap().is_err());
    /// ```
    pub fn request_stop(&self) -> bool {
        self.rec.request_stop()
    }

    /// Whether a stop has been requested.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("q", |_| ()).unwrap();
    /// assert!(!t.stopper().stop_requested());
    /// ```
    pub fn stop_requested(&self) -> bool {
        self.rec.stop.stop_requested()
    }

    /// Whether the thread's body has returned (or panicked).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("f", |_| 5).unwrap();
    /// let st = t.stopper();
    /// assert_eq!(t.join().unwrap(), 5);
    /// assert!(st.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.rec.finished.is_set()
    }

    /// Blocks until the thread's body has returned.
    ///
    /// The body's return synchronizes with this function returning.
    ///
    /// # Errors
    ///
    /// [`ThreadError::SelfJoin`] when called from the thread itself.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("w", |_| ()).unwrap();
    /// t.stopper().wait().unwrap();
    /// assert!(t.is_finished());
    /// ```
    pub fn wait(&self) -> Result<(), ThreadError> {
        if self.rec.is_current() {
            return Err(ThreadError::SelfJoin {
                name: self.rec.name.to_string(),
            });
        }
        self.rec.finished.wait();
        Ok(())
    }

    /// Blocks until the thread's body has returned or `timeout` passed;
    /// returns whether it has returned. From the thread itself, returns
    /// `false` at once (it cannot finish while waiting for itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let t = threadward::spawn("wt", |cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// let st = t.stopper();
    /// assert!(!st.wait_timeout(Duration::from_millis(10)));
    /// st.request_stop();
    /// assert!(st.wait_timeout(Duration::from_secs(10)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.rec.is_current() {
            return self.rec.finished.is_set();
        }
        self.rec.finished.wait_timeout(timeout)
    }

    /// Asks the thread to pause and blocks until it sits in
    /// [`Context::pause_point`](crate::Context::pause_point)
    /// (`kthread_park`).
    ///
    /// Like `kthread_park`, the request wakes the thread out of the
    /// library wait it sits in (`sleep`, `sleep_until`, `recv`,
    /// `recv_timeout`, the fd waits, [`Io`](crate::Io) reads and writes,
    /// `accept`): it parks right there and, after
    /// [`resume`](Stopper::resume), goes on waiting (a sleep keeps its
    /// deadline). A `wait_while` on the caller's condvar, which holds the
    /// caller's lock, parks at the thread's next pause point instead. Any
    /// other wait parks where it is, with whatever locks the thread holds
    /// there: a controller that pauses a thread must not then wait for
    /// them.
    ///
    /// Returns `true` once the thread is paused; `false` if it was stopped
    /// or finished instead (it will never pause), if another handle
    /// withdrew the pause with [`resume`](Stopper::resume), or if called
    /// from the thread itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let t = threadward::spawn("pausable", |cx| {
    ///     let mut rounds = 0u64;
    ///     while cx.pause_point().is_ok() {
    ///         rounds += 1;
    ///         let _ = cx.sleep(Duration::from_millis(1));
    ///     }
    ///     rounds
    /// })
    /// .unwrap();
    /// let st = t.stopper();
    /// assert!(st.pause());
    /// assert!(st.is_paused());
    /// st.resume();
    /// t.stop().unwrap();
    /// ```
    pub fn pause(&self) -> bool {
        self.pause_deadline(None)
    }

    /// [`pause`](Stopper::pause) bounded by `timeout` (any `Duration`).
    ///
    /// Returns `true` once the thread is paused. Returns `false` if it was
    /// stopped or finished, if another handle withdrew the pause with
    /// [`resume`](Stopper::resume), or when `timeout` passed; on a timeout
    /// the request is withdrawn, so the thread will not pause later with
    /// nobody waiting for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A thread never in a pause point or a library wait never pauses.
    /// let t = threadward::spawn("busy", |cx| while !cx.should_stop() { std::thread::yield_now() }).unwrap();
    /// assert!(!t.stopper().pause_timeout(Duration::from_millis(20)));
    /// t.stop().unwrap();
    /// ```
    pub fn pause_timeout(&self, timeout: Duration) -> bool {
        self.pause_deadline(sync::deadline_after(timeout))
    }

    fn pause_deadline(&self, deadline: Option<Instant>) -> bool {
        if self.rec.is_current() {
            return false;
        }
        let rec = &self.rec;
        let mut p = sync::lock(&rec.pause);
        p.requested = true;
        drop(p);
        // Out of whatever library wait it sits in, to its pause point.
        rec.kick.kick();
        let p = sync::lock(&rec.pause);
        let (mut p, _) = sync::wait_until(&rec.pause, &rec.pause_cv, p, deadline, |p| {
            p.paused || !p.requested || rec.stop.stop_requested() || rec.finished.is_set()
        });
        if !p.paused && p.requested {
            p.requested = false; // timed out, stopped or finished: withdraw
        }
        p.paused
    }

    /// Ends a pause: the thread leaves its pause point (or will not stop at
    /// the next one).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("r", |cx| cx.pause_point()).unwrap();
    /// t.stopper().resume(); // nothing to resume: harmless
    /// assert_eq!(t.join().unwrap(), Ok(()));
    /// ```
    pub fn resume(&self) {
        sync::lock(&self.rec.pause).requested = false;
        self.rec.pause_cv.notify_all();
    }

    /// Whether the thread currently sits in a pause point.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("p", |_| ()).unwrap();
    /// assert!(!t.stopper().is_paused());
    /// ```
    pub fn is_paused(&self) -> bool {
        sync::lock(&self.rec.pause).paused
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopper")
            .field("id", &self.rec.id)
            .field("name", &self.rec.name)
            .field("finished", &self.is_finished())
            .finish()
    }
}
