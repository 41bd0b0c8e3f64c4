use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rustix::event::PollFlags;

use crate::io::StopEventFd;
use crate::record::{ThreadId, ThreadRecord, ThreadState, WaitKind};
use crate::stop::{HasStop, StopToken, Stopped};
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
    /// The stop token: given (a managed thread, a job whose stop state
    /// exists) or made on first use from `lazy` (a pool job's stop state,
    /// which most jobs never look at).
    token: OnceLock<StopToken>,
    lazy: Option<std::sync::Arc<dyn HasStop>>,
    chan: OnceLock<StopChannel>,
    efd: OnceLock<StopEventFd>,
    /// Told when the code blocks (a pool job's accounting); `None` on a
    /// managed thread.
    hook: Option<Arc<dyn BlockHook>>,
}

/// Who wants to know when a thread's code really blocks (a
/// concurrency-managed pool: cmwq's `wq_worker_sleeping`). The thread layer
/// does not know pools; they install this.
pub(crate) trait BlockHook: Send + Sync {
    /// The code enters a blocking wait (cmwq's `wq_worker_sleeping`).
    fn enter(&self);
    /// The code leaves it (cmwq's `wq_worker_running`).
    fn leave(&self);
}

/// Leaves the blocking section on drop, also when the code unwinds.
struct Blocked<'a>(Option<&'a dyn BlockHook>);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.0 {
            h.leave();
        }
    }
}

impl Context {
    /// A context observing `token` on the managed thread `rec`.
    pub(crate) fn new(rec: Arc<ThreadRecord>, token: StopToken) -> Context {
        Context {
            rec,
            token: OnceLock::from(token),
            lazy: None,
            chan: OnceLock::new(),
            efd: OnceLock::new(),
            hook: None,
        }
    }

    /// A context whose blocking waits are reported to `hook`.
    /// A pool job's context: its stop state is `stop`'s, made on first use.
    pub(crate) fn with_hook(
        rec: Arc<ThreadRecord>,
        stop: std::sync::Arc<dyn HasStop>,
        hook: Option<Arc<dyn BlockHook>>,
    ) -> Context {
        Context {
            rec,
            token: OnceLock::new(),
            lazy: Some(stop),
            chan: OnceLock::new(),
            efd: OnceLock::new(),
            hook,
        }
    }

    /// Enters a blocking section until the guard drops.
    fn enter_blocking(&self) -> Blocked<'_> {
        let hook = self.hook.as_deref();
        if let Some(h) = hook {
            h.enter();
        }
        Blocked(hook)
    }

    /// Runs `f`, a call that may block outside this crate's waits (a
    /// blocking read, a lock held elsewhere, a foreign library), and tells
    /// a concurrency-managed pool so: while `f` runs, the job does not
    /// count against the pool's concurrency target, and a queued job gets
    /// a thread at once (ForkJoinPool's `managedBlock`, .NET's
    /// `NotifyThreadBlocked`). On a managed thread it just runs `f`.
    ///
    /// The pool's own waits (`sleep`, `recv`, `wait_while`, the fd waits,
    /// `pause_point`) do this by themselves. Without it, the pool's monitor
    /// still notices a blocked job, a millisecond or so later.
    ///
    /// Wrap only the call that blocks, not the work around it: everything
    /// inside `f` runs uncounted, so a whole read-then-hash loop inside
    /// `blocking` also hashes uncounted, and the pool starts another job
    /// for every one of them (29-54 threads instead of 8 in a user's file
    /// hasher). Read inside `blocking`, compute outside it:
    ///
    /// ```no_run
    /// # fn hash(_: &[u8]) -> u64 { 0 }
    /// # let pool = threadward::Pool::builder().build().unwrap();
    /// # let path = std::path::PathBuf::from("f");
    /// pool.spawn(move |cx| {
    ///     let bytes = cx.blocking(|| std::fs::read(&path))?; // blocks: uncounted
    ///     Ok::<_, std::io::Error>(hash(&bytes)) // computes: counted
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// use threadward::{Concurrency, Pool};
    ///
    /// let pool = Pool::builder().concurrency(Concurrency::Limit(1)).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<u32>();
    /// // Blocks in a std channel, telling the pool so: the next job starts at once.
    /// let waiter = pool.spawn(move |cx| cx.blocking(|| rx.recv().unwrap())).unwrap();
    /// let sender = pool.spawn(move |_| tx.send(7).unwrap()).unwrap();
    /// sender.join().unwrap();
    /// assert_eq!(waiter.join(), Ok(7));
    /// ```
    pub fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        let _blocked = self.enter_blocking();
        f()
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
        match (self.token.get(), &self.lazy) {
            (Some(t), _) => t.stop_requested(),
            (None, Some(lazy)) => lazy.stop().requested(),
            (None, None) => unreachable!("a context has a token or a lazy stop"),
        }
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
        self.token.get_or_init(|| {
            let lazy = self
                .lazy
                .as_ref()
                .expect("a context has a token or a lazy stop");
            lazy.stop().source().token()
        })
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

    fn waiting<R>(&self, kind: WaitKind, f: impl FnOnce() -> R) -> R {
        self.rec.set_state(ThreadState::Waiting(kind));
        let r = self.blocking(f);
        self.rec.set_state(ThreadState::Running);
        r
    }

    fn stop_channel(&self) -> &StopChannel {
        self.chan.get_or_init(|| StopChannel::new(self.token()))
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
        if d.is_zero() {
            return Ok(()); // nothing to wait for: no blocking to report
        }
        // Set up (the first time) before telling a pool we block: the room
        // we leave goes to another job only once this thread really waits.
        let chan = self.stop_channel();
        // The deadline is kept across a pause (`None`: beyond any Instant).
        let deadline = Instant::now().checked_add(d);
        loop {
            let done = self.waiting(WaitKind::Sleep, || {
                chan.sleep_kickable(self.token(), deadline, &self.rec.kick.rx)
            })?;
            if done {
                return Ok(());
            }
            self.pause_point()?; // kicked: park if a pause is requested
        }
    }

    /// Sleeps until `deadline`, or until stopped: for periodic work that
    /// must not drift (`deadline += period`). A deadline already past
    /// returns at once.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the stop was requested before or during the sleep.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let t = threadward::spawn("tick", |cx| {
    ///     let mut next = Instant::now();
    ///     let mut ticks = 0;
    ///     loop {
    ///         next += Duration::from_millis(2);
    ///         if cx.sleep_until(next).is_err() {
    ///             return ticks;
    ///         }
    ///         ticks += 1;
    ///     }
    /// })
    /// .unwrap();
    /// std::thread::sleep(Duration::from_millis(20));
    /// assert!(t.stop().unwrap() > 0);
    /// ```
    pub fn sleep_until(&self, deadline: Instant) -> Result<(), Stopped> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }

    /// [`recv`](Context::recv) for at most `timeout` (any `Duration`;
    /// `Duration::MAX` never passes).
    ///
    /// # Errors
    ///
    /// As `recv`, and [`RecvError::Timeout`] when `timeout` passes first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use threadward::RecvError;
    ///
    /// let (_tx, rx) = threadward::channel::unbounded::<u32>();
    /// let t = threadward::spawn("idle", move |cx| cx.recv_timeout(&rx, Duration::from_millis(5))).unwrap();
    /// assert_eq!(t.join().unwrap(), Err(RecvError::Timeout));
    /// ```
    pub fn recv_timeout<M>(&self, rx: &Receiver<M>, timeout: Duration) -> Result<M, RecvError> {
        self.recv_until(rx, Instant::now().checked_add(timeout))
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
        self.recv_until(rx, None)
    }

    /// `recv` with an optional deadline; a pause request parks the thread
    /// at its pause point and the wait goes on (deadline kept).
    fn recv_until<M>(&self, rx: &Receiver<M>, deadline: Option<Instant>) -> Result<M, RecvError> {
        if self.should_stop() {
            return Err(RecvError::Stopped);
        }
        // A message already there (or a disconnect) is not a wait.
        match rx.try_recv() {
            Ok(m) => return Ok(m),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return Err(RecvError::Disconnected)
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(RecvError::Timeout);
        }
        let chan = self.stop_channel();
        loop {
            let got = self.waiting(WaitKind::Channel, || {
                chan.recv_kickable(self.token(), rx, deadline, &self.rec.kick.rx)
            })?;
            match got {
                Some(m) => return Ok(m),
                None => self.pause_point()?,
            }
        }
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
        self.wait_while_until(cv, guard, None, cond).map(|(g, _)| g)
    }

    /// [`wait_while`](Context::wait_while) for at most `timeout` (any
    /// `Duration`; `MAX` never passes), like std's `wait_timeout_while`:
    /// the flag is `true` if it timed out with `cond` still holding.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the stop was requested; the guard is released.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Condvar, Mutex};
    /// use std::time::Duration;
    ///
    /// let t = threadward::spawn("cv", |cx| {
    ///     let (m, cv) = (Mutex::new(false), Condvar::new());
    ///     let (guard, timed_out) = cx
    ///         .wait_while_timeout(&cv, m.lock().unwrap(), Duration::from_millis(5), |ready| !*ready)
    ///         .unwrap();
    ///     drop(guard);
    ///     timed_out
    /// })
    /// .unwrap();
    /// assert!(t.join().unwrap());
    /// ```
    pub fn wait_while_timeout<'a, U, F>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, U>,
        timeout: Duration,
        cond: F,
    ) -> Result<(MutexGuard<'a, U>, bool), Stopped>
    where
        F: FnMut(&mut U) -> bool,
    {
        self.wait_while_until(cv, guard, Instant::now().checked_add(timeout), cond)
    }

    fn wait_while_until<'a, U, F>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, U>,
        deadline: Option<Instant>,
        cond: F,
    ) -> Result<(MutexGuard<'a, U>, bool), Stopped>
    where
        F: FnMut(&mut U) -> bool,
    {
        let mut guard = guard;
        let mut cond = cond;
        if self.should_stop() {
            return Err(Stopped);
        }
        if !cond(&mut *guard) {
            return Ok((guard, false)); // nothing to wait for
        }
        self.waiting(WaitKind::Condvar, || {
            wait::condvar_wait_while_until(self.token(), cv, guard, deadline, cond)
        })
    }

    fn wait_fd(&self, fd: impl AsFd, flags: PollFlags) -> io::Result<()> {
        self.wait_fd_until(fd, flags, None)
    }

    pub(crate) fn wait_fd_until(
        &self,
        fd: impl AsFd,
        flags: PollFlags,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        if self.should_stop() {
            return Err(Stopped.into());
        }
        let efd = match self.efd.get() {
            Some(e) => e,
            None => {
                let e = StopEventFd::new(self.token())?;
                self.efd.get_or_init(|| e)
            }
        };
        let (kick, made) = self.rec.kick.fd()?;
        if made {
            // A pause requested before the kick fd existed was not
            // signalled on it: take it here (the request is set before the
            // kick is sent). Later requests write to the fd.
            self.pause_point()?;
        }
        loop {
            let ready = self.waiting(WaitKind::Fd, || {
                efd.wait(self.token(), &fd, flags, deadline, &kick)
            })?;
            if ready {
                return Ok(());
            }
            self.pause_point()?; // kicked: park, then wait on
        }
    }

    /// [`wait_readable`](Context::wait_readable) for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As `wait_readable`, and [`io::ErrorKind::TimedOut`] when `timeout`
    /// passes first (any `Duration`; `Duration::MAX` never passes).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use std::time::Duration;
    ///
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let t = threadward::spawn("idle", move |cx| {
    ///     cx.wait_readable_timeout(&a, Duration::from_millis(5)).unwrap_err().kind()
    /// })
    /// .unwrap();
    /// assert_eq!(t.join().unwrap(), std::io::ErrorKind::TimedOut);
    /// ```
    pub fn wait_readable_timeout(&self, fd: impl AsFd, timeout: Duration) -> io::Result<()> {
        self.wait_fd_until(fd, PollFlags::IN, Instant::now().checked_add(timeout))
    }

    /// [`wait_writable`](Context::wait_writable) for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_readable_timeout`](Context::wait_readable_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use std::time::Duration;
    ///
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let t = threadward::spawn("w", move |cx| cx.wait_writable_timeout(&a, Duration::from_secs(1)).is_ok())
    ///     .unwrap();
    /// assert!(t.join().unwrap());
    /// ```
    pub fn wait_writable_timeout(&self, fd: impl AsFd, timeout: Duration) -> io::Result<()> {
        self.wait_fd_until(fd, PollFlags::OUT, Instant::now().checked_add(timeout))
    }

    /// Wraps `fd` (a socket, pipe, terminal...) so that its reads and
    /// writes wait stop-aware; see [`Io`](crate::io::Io). The descriptor is
    /// switched to non-blocking.
    ///
    /// # Errors
    ///
    /// If the descriptor cannot be made non-blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    ///
    /// let (a, b) = UnixStream::pair().unwrap();
    /// let t = threadward::spawn("echo", move |cx| -> std::io::Result<()> {
    ///     let mut io = cx.io(b)?;
    ///     let mut buf = [0; 5];
    ///     io.read_exact(&mut buf)?;
    ///     io.write_all(&buf)
    /// })
    /// .unwrap();
    /// (&a).write_all(b"hello").unwrap();
    /// let mut back = [0; 5];
    /// (&a).read_exact(&mut back).unwrap();
    /// assert_eq!(&back, b"hello");
    /// t.join().unwrap().unwrap();
    /// ```
    pub fn io<T: AsFd>(&self, fd: T) -> io::Result<crate::io::Io<'_, T>> {
        crate::io::Io::new(self, fd)
    }

    /// Accepts a connection on `listener`, waiting stop-aware (the
    /// listener is switched to non-blocking). The accepted stream is
    /// blocking, as std returns it; wrap it with [`io`](Context::io).
    ///
    /// # Errors
    ///
    /// The stop error (see [`is_stopped`](crate::is_stopped)), or the
    /// listener's own error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let t = threadward::spawn("acceptor", move |cx| {
    ///     let mut served = 0;
    ///     while cx.accept(&listener).is_ok() {
    ///         served += 1;
    ///     }
    ///     served
    /// })
    /// .unwrap();
    /// let _c = TcpStream::connect(addr).unwrap();
    /// while threadward::registry::snapshot().threads.is_empty() {}
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// assert_eq!(t.stop().unwrap(), 1); // stopped in accept
    /// ```
    pub fn accept<L: crate::io::Accept>(&self, listener: &L) -> io::Result<(L::Stream, L::Addr)> {
        rustix::io::ioctl_fionbio(listener, true)?;
        loop {
            if self.should_stop() {
                return Err(Stopped.into());
            }
            match listener.accept_now() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_readable(listener)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
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
        let _guard = self.token().on_stop(move || {
            let _p = sync::lock(&waker.pause);
            waker.pause_cv.notify_all();
        });
        let mut p = sync::lock(&rec.pause);
        if p.requested && !self.token().stop_requested() {
            p.paused = true;
            rec.set_state(ThreadState::Paused);
            rec.pause_cv.notify_all();
            let _blocked = self.enter_blocking();
            while p.requested && !self.token().stop_requested() {
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
