use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, MutexGuard, OnceLock};
use std::time::Duration;

use crossbeam_channel::Receiver;
use rustix::event::PollFlags;

use crate::io::StopEventFd;
use crate::record::{ThreadId, ThreadRecord, ThreadState, WaitKind};
use crate::stop::{StopToken, Stopped};
use crate::sync;
use crate::wait::{self, RecvError, StopChannel};

/// What a managed thread's body (and every pool job) is given: its stop
/// token, its identity, and waits that return `Err(Stopped)` when it is
/// asked to stop.
///
/// Every wait checks the stop first, so a stop requested *before* the wait
/// began is seen too. Each records itself in the registry while it blocks,
/// so [`registry::snapshot`](crate::registry::snapshot) can tell which wait
/// a thread sits in.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let t = threadward::spawn("ticker", |cx| {
///     let mut ticks = 0;
///     while cx.sleep(Duration::from_millis(1)).is_ok() {
///         ticks += 1;
///     }
///     ticks
/// })
/// .unwrap();
/// std::thread::sleep(Duration::from_millis(20));
/// assert!(t.stop().unwrap() > 0);
/// ```
pub struct Context {
    rec: Arc<ThreadRecord>,
    token: StopToken,
    chan: OnceLock<StopChannel>,
    efd: OnceLock<StopEventFd>,
}

impl Context {
    /// A context observing `token` on the managed thread `rec`.
    pub(crate) fn new(rec: Arc<ThreadRecord>, token: StopToken) -> Context {
        Context {
            rec,
            token,
            chan: OnceLock::new(),
            efd: OnceLock::new(),
        }
    }

    /// Whether this thread (or job) has been asked to stop
    /// (`kthread_should_stop`).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("loop", |cx| {
    ///     while !cx.should_stop() {
    ///         std::thread::yield_now();
    ///     }
    ///     "done"
    /// })
    /// .unwrap();
    /// assert_eq!(t.stop().unwrap(), "done");
    /// ```
    pub fn should_stop(&self) -> bool {
        self.token.stop_requested()
    }

    /// The stop token, for registering [`on_stop`](StopToken::on_stop)
    /// callbacks that unblock waits this crate does not know.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("tok", |cx| {
    ///     let (tx, rx) = std::sync::mpsc::channel::<()>();
    ///     let _guard = cx.token().on_stop(move || drop(tx));
    ///     let _ = rx.recv(); // returns once the stop drops the sender
    /// })
    /// .unwrap();
    /// t.stop().unwrap();
    /// ```
    pub fn token(&self) -> &StopToken {
        &self.token
    }

    /// The id of the managed thread running this code.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("me", |cx| cx.id()).unwrap();
    /// let id = t.id();
    /// assert_eq!(t.join().unwrap(), id);
    /// ```
    pub fn id(&self) -> ThreadId {
        self.rec.id
    }

    /// The full name of the managed thread running this code.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("a-rather-long-thread-name", |cx| cx.name().to_owned()).unwrap();
    /// assert_eq!(t.join().unwrap(), "a-rather-long-thread-name");
    /// ```
    pub fn name(&self) -> &str {
        &self.rec.name
    }

    /// The registry record of the thread running this code.
    pub(crate) fn record(&self) -> &ThreadRecord {
        &self.rec
    }

    fn waiting<R>(&self, kind: WaitKind, f: impl FnOnce() -> R) -> R {
        self.rec.set_state(ThreadState::Waiting(kind));
        let r = f();
        self.rec.set_state(ThreadState::Running);
        r
    }

    fn stop_channel(&self) -> &StopChannel {
        self.chan.get_or_init(|| StopChannel::new(&self.token))
    }

    /// Sleeps for `d`, or until stopped.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the stop was requested before or during the sleep.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let t = threadward::spawn("nap", |cx| cx.sleep(Duration::from_secs(3600))).unwrap();
    /// assert_eq!(t.stop().unwrap(), Err(threadward::Stopped)); // returns at once
    /// ```
    pub fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        if self.should_stop() {
            return Err(Stopped);
        }
        self.waiting(WaitKind::Sleep, || {
            self.stop_channel().sleep(&self.token, d)
        })
    }

    /// Receives a message from a crossbeam channel, or returns on disconnect
    /// or stop.
    ///
    /// # Errors
    ///
    /// [`RecvError::Stopped`] on stop (checked first), [`RecvError::Disconnected`]
    /// when the channel is empty and every sender is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = crossbeam_channel::unbounded();
    /// let t = threadward::spawn("consumer", move |cx| {
    ///     let mut sum = 0;
    ///     while let Ok(v) = cx.recv(&rx) {
    ///         sum += v;
    ///     }
    ///     sum
    /// })
    /// .unwrap();
    /// tx.send(2).unwrap();
    /// tx.send(3).unwrap();
    /// drop(tx);
    /// assert_eq!(t.join().unwrap(), 5);
    /// ```
    pub fn recv<M>(&self, rx: &Receiver<M>) -> Result<M, RecvError> {
        if self.should_stop() {
            return Err(RecvError::Stopped);
        }
        self.waiting(WaitKind::Channel, || {
            self.stop_channel().recv(&self.token, rx)
        })
    }

    /// Blocks while `cond` holds, like [`Condvar::wait_while`], or until stopped.
    ///
    /// A notification of `cv` wakes it at once. A stop is seen within
    /// 10 ms: a stopper cannot notify a borrowed condvar it does not own,
    /// so this wait re-checks its stop token in growing slices (1 ms up to
    /// 10 ms). Mutex poisoning is ignored.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the stop was requested; the guard is released.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Condvar, Mutex};
    ///
    /// let pair = Arc::new((Mutex::new(false), Condvar::new()));
    /// let p = pair.clone();
    /// let t = threadward::spawn("cv", move |cx| {
    ///     let (m, cv) = &*p;
    ///     cx.wait_while(cv, m.lock().unwrap(), |ready| !*ready).map(|g| *g)
    /// })
    /// .unwrap();
    /// *pair.0.lock().unwrap() = true;
    /// pair.1.notify_all();
    /// assert_eq!(t.join().unwrap(), Ok(true));
    /// ```
    pub fn wait_while<'a, U, F>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, U>,
        cond: F,
    ) -> Result<MutexGuard<'a, U>, Stopped>
    where
        F: FnMut(&mut U) -> bool,
    {
        self.waiting(WaitKind::Condvar, || {
            wait::condvar_wait_while(&self.token, cv, guard, cond)
        })
    }

    fn wait_fd(&self, fd: impl AsFd, flags: PollFlags) -> io::Result<()> {
        if self.should_stop() {
            return Err(Stopped.into());
        }
        let efd = match self.efd.get() {
            Some(e) => e,
            None => {
                let e = StopEventFd::new(&self.token)?;
                self.efd.get_or_init(|| e)
            }
        };
        self.waiting(WaitKind::Fd, || efd.wait(&self.token, fd, flags))
    }

    /// Blocks until `fd` is readable (or reports an error or hang-up), or
    /// until stopped.
    ///
    /// # Errors
    ///
    /// On stop, an error of kind [`io::ErrorKind::Other`] wrapping
    /// [`Stopped`] (test it with [`is_stopped`](crate::is_stopped)); never a
    /// kind std's I/O loops retry, so `read_exact` and `write_all` over a
    /// reader that waits here return on stop instead of spinning; an
    /// `io::Error` if the eventfd or `poll` fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    ///
    /// let (a, mut b) = UnixStream::pair().unwrap();
    /// let t = threadward::spawn("reader", move |cx| cx.wait_readable(&a).is_ok()).unwrap();
    /// b.write_all(b"x").unwrap();
    /// assert!(t.join().unwrap());
    /// ```
    pub fn wait_readable(&self, fd: impl AsFd) -> io::Result<()> {
        self.wait_fd(fd, PollFlags::IN)
    }

    /// Blocks until `fd` is writable (or reports an error or hang-up), or
    /// until stopped.
    ///
    /// # Errors
    ///
    /// As [`wait_readable`](Context::wait_readable).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    ///
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let t = threadward::spawn("writer", move |cx| cx.wait_writable(&a).is_ok()).unwrap();
    /// assert!(t.join().unwrap());
    /// ```
    pub fn wait_writable(&self, fd: impl AsFd) -> io::Result<()> {
        self.wait_fd(fd, PollFlags::OUT)
    }

    /// Parks here while a [`Stopper::pause`](crate::Stopper::pause) is in
    /// effect (`kthread_parkme`); returns at once otherwise.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the stop was requested (a stop also ends a pause).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("pp", |cx| {
    ///     while cx.pause_point().is_ok() {
    ///         std::thread::yield_now();
    ///     }
    /// })
    /// .unwrap();
    /// let st = t.stopper();
    /// assert!(st.pause());
    /// assert!(st.is_paused());
    /// t.stop().unwrap(); // a stop ends the pause
    /// ```
    pub fn pause_point(&self) -> Result<(), Stopped> {
        if self.should_stop() {
            return Err(Stopped);
        }
        let rec = &self.rec;
        if !sync::lock(&rec.pause).requested {
            return Ok(());
        }
        // Slow path: make our own stop (a pool job's token may differ from
        // the thread's) wake the pause condvar.
        let waker = rec.clone();
        let _guard = self.token.on_stop(move || {
            let _p = sync::lock(&waker.pause);
            waker.pause_cv.notify_all();
        });
        let mut p = sync::lock(&rec.pause);
        if p.requested && !self.token.stop_requested() {
            p.paused = true;
            rec.set_state(ThreadState::Paused);
            rec.pause_cv.notify_all();
            while p.requested && !self.token.stop_requested() {
                p = sync::wait(&rec.pause_cv, p);
            }
            p.paused = false;
            rec.set_state(ThreadState::Running);
        }
        drop(p);
        if self.should_stop() {
            Err(Stopped)
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.rec.id)
            .field("name", &self.rec.name)
            .field("should_stop", &self.should_stop())
            .finish()
    }
}
