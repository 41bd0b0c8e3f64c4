//! Stop-aware file-descriptor readiness: `poll(2)` on the user's fd plus an
//! eventfd that the stop writes to, both through `rustix`.
//!
//! The eventfd is created the first time a context waits on an fd and lives
//! as long as the context; its `on_stop` callback writes `1` to it, which
//! makes it readable and ends the `poll`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

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
    /// condition), or the stop is requested.
    pub(crate) fn wait(
        &self,
        token: &StopToken,
        fd: impl AsFd,
        flags: PollFlags,
    ) -> io::Result<()> {
        loop {
            if token.stop_requested() {
                return Err(Stopped.into());
            }
            let mut fds = [
                PollFd::new(&fd, flags),
                PollFd::new(&*self.fd, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if !fds[1].revents().is_empty() {
                return Err(Stopped.into());
            }
            if !fds[0].revents().is_empty() {
                return Ok(());
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
