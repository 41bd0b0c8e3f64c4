//! Stop-aware file-descriptor readiness: `poll(2)` on the user's fd plus an
//! eventfd that the stop writes to, both through `rustix`.
//!
//! The eventfd is created the first time a context waits on an fd and lives
//! as long as the context; its `on_stop` callback writes `1` to it, which
//! makes it readable and ends the `poll`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;

use crate::stop::{StopCallback, StopToken, Stopped};

/// An eventfd that becomes readable when the stop is requested.
pub(crate) struct StopEventFd {
    fd: Arc<OwnedFd>,
    _guard: StopCallback,
}

impl StopEventFd {
    pub(crate) fn new(token: &StopToken) -> io::Result<StopEventFd> {
        let fd = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        let writer = fd.clone();
        let guard = token.on_stop(move || {
            // Cannot fail short of a counter overflow, which one write can't cause.
            let _ = rustix::io::write(&*writer, &1u64.to_ne_bytes());
        });
        Ok(StopEventFd { fd, _guard: guard })
    }

    /// Blocks until `fd` reports any of `flags` (or an error/hang-up
    /// condition), the stop is requested, or `deadline` passes (then
    /// `TimedOut`).
    pub(crate) fn wait(
        &self,
        token: &StopToken,
        fd: impl AsFd,
        flags: PollFlags,
        deadline: Option<Instant>,
        kick: &OwnedFd,
    ) -> io::Result<bool> {
        loop {
            if token.stop_requested() {
                return Err(Stopped.into());
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(timed_out());
                    }
                    // Longer than a Timespec holds: as good as no deadline.
                    rustix::event::Timespec::try_from(left).ok()
                }
            };
            let mut fds = [
                PollFd::new(&fd, flags),
                PollFd::new(&*self.fd, PollFlags::IN),
                PollFd::new(kick, PollFlags::IN),
            ];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if !fds[1].revents().is_empty() {
                return Err(Stopped.into());
            }
            if !fds[0].revents().is_empty() {
                return Ok(true);
            }
            if !fds[2].revents().is_empty() {
                // A pause request: take the kick (the counter resets).
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(kick, &mut buf);
                return Ok(false);
            }
        }
    }
}

impl From<Stopped> for io::Error {
    /// A stop seen by an I/O wait: kind [`io::ErrorKind::Other`], with
    /// [`Stopped`] as its inner error (test it with [`is_stopped`]).
    ///
    /// Never `Interrupted`: std's `read_exact`, `read_to_end`, `write_all`
    /// and `io::copy` retry that kind, so a stopped reader used through
    /// them would spin for ever instead of returning.
    fn from(s: Stopped) -> io::Error {
        io::Error::other(s)
    }
}

/// The error of a wait whose deadline passed.
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the wait's deadline passed")
}

/// A file descriptor whose reads and writes wait stop-aware: `Read`,
/// `Write` (and, through [`std::io::BufReader`], `BufRead`) over any
/// socket, pipe or terminal, made by [`Context::io`](crate::thread::Context::io).
///
/// The descriptor is switched to non-blocking (and with it every duplicate
/// sharing its file description: `try_clone`s, a terminal shared with the
/// shell; it stays so after the `Io` is dropped); when it has nothing to read
/// or no room to write, the call waits in
/// [`wait_readable`](crate::thread::Context::wait_readable) /
/// [`wait_writable`](crate::thread::Context::wait_writable). So a partial line, a
/// silent peer or a full socket never keep a stopped thread: the call
/// returns the stop error (kind [`io::ErrorKind::Other`], see
/// [`is_stopped`]), which `read_line`, `read_exact` and `write_all` pass on
/// instead of retrying. With [`set_timeout`](Io::set_timeout), a call that
/// makes no progress for that long returns [`io::ErrorKind::TimedOut`]
/// (an idle-connection timeout).
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use std::os::unix::net::UnixStream;
///
/// let (ours, mut peer) = UnixStream::pair().unwrap();
/// let t = threadward::spawn("line-reader", move |cx| {
///     let mut lines = BufReader::new(cx.io(ours)?);
///     let mut line = String::new();
///     lines.read_line(&mut line)?; // waits stop-aware, even mid-line
///     Ok::<_, std::io::Error>(line)
/// })
/// .unwrap();
/// peer.write_all(b"half a li").unwrap();
/// // Stopped while waiting for the rest of the line: returns at once.
/// let err = t.stop().unwrap().unwrap_err();
/// assert!(threadward::is_stopped(&err));
/// ```
pub struct Io<'cx, T: AsFd> {
    cx: &'cx crate::thread::Context,
    inner: T,
    timeout: Option<Duration>,
}

impl<'cx, T: AsFd> Io<'cx, T> {
    pub(crate) fn new(cx: &'cx crate::thread::Context, inner: T) -> io::Result<Io<'cx, T>> {
        rustix::io::ioctl_fionbio(&inner, true)?;
        Ok(Io {
            cx,
            inner,
            timeout: None,
        })
    }

    /// Each read or write returns [`io::ErrorKind::TimedOut`] if it waits
    /// longer than `timeout` without progress; `None` (the default) waits
    /// until data, room or a stop. Any `Duration` is accepted (`MAX` is as
    /// good as `None`).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The wrapped descriptor.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped descriptor, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The wrapped descriptor back (still non-blocking).
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|t| Instant::now().checked_add(t))
    }

    /// Runs `op` until it does not say `WouldBlock`, waiting for `flags`
    /// in between.
    fn retry<R>(
        &mut self,
        flags: PollFlags,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        let deadline = self.deadline();
        loop {
            match op(&mut self.inner) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.cx.wait_fd_until(&self.inner, flags, deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl<T: AsFd + Read> Read for Io<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cx.should_stop() {
            return Err(Stopped.into());
        }
        self.retry(PollFlags::IN, |inner| inner.read(buf))
    }
}

impl<T: AsFd + Write> Write for Io<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cx.should_stop() {
            return Err(Stopped.into());
        }
        self.retry(PollFlags::OUT, |inner| inner.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.retry(PollFlags::OUT, |inner| inner.flush())
    }
}

impl<T: AsFd + std::fmt::Debug> std::fmt::Debug for Io<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A listening socket [`Context::accept`](crate::thread::Context::accept) can wait
/// on: [`std::net::TcpListener`] and [`std::os::unix::net::UnixListener`].
pub trait Accept: AsFd + sealed::Sealed {
    /// The accepted connection.
    type Stream;
    /// The peer's address.
    type Addr;
    /// One non-blocking `accept`.
    #[doc(hidden)]
    fn accept_now(&self) -> io::Result<(Self::Stream, Self::Addr)>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::TcpListener {}
    impl Sealed for std::os::unix::net::UnixListener {}
}

impl Accept for std::net::TcpListener {
    type Stream = std::net::TcpStream;
    type Addr = std::net::SocketAddr;
    fn accept_now(&self) -> io::Result<(Self::Stream, Self::Addr)> {
        self.accept()
    }
}

impl Accept for std::os::unix::net::UnixListener {
    type Stream = std::os::unix::net::UnixStream;
    type Addr = std::os::unix::net::SocketAddr;
    fn accept_now(&self) -> io::Result<(Self::Stream, Self::Addr)> {
        self.accept()
    }
}

/// Whether `e` is a stop reported by a stop-aware I/O wait.
///
/// # Examples
///
/// ```
/// let e: std::io::Error = threadward::Stopped.into();
/// assert!(threadward::is_stopped(&e));
/// assert!(!threadward::is_stopped(&std::io::Error::other("x")));
/// ```
pub fn is_stopped(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}
