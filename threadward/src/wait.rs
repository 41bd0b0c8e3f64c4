//! Stop-aware waits: sleep, condition variable, channel receive.
//!
//! Each wait returns `Err(Stopped)` when its token's stop is requested, also
//! when the stop came before the wait began. The mechanisms:
//!
//! * **sleep and channel**: a per-context "stop channel" whose only sender is
//!   owned by an [`on_stop`](crate::StopToken::on_stop) callback. The stop
//!   drops the sender, the receiver becomes disconnected, and a
//!   `recv_timeout` (sleep) or a `select` with the user's receiver (recv)
//!   returns at once. No polling, one wake-up.
//! * **condition variable**: the stopper cannot reach a borrowed
//!   `std::sync::Condvar` from a `'static` callback (and this crate has no
//!   `unsafe` to erase the borrow), so the wait sleeps in slices that grow
//!   from 1 ms to [`CONDVAR_POLL_MAX`] and checks the stop between them.
//!   Notifications from user code still wake it at once.

use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::stop::{StopCallback, StopToken, Stopped};

/// Longest slice a stop-aware condvar wait sleeps before re-checking its
/// stop token; bounds how late it sees a stop.
pub(crate) const CONDVAR_POLL_MAX: Duration = Duration::from_millis(10);

/// A receiver that disconnects when the stop is requested.
pub(crate) struct StopChannel {
    rx: Receiver<()>,
    _guard: StopCallback,
}

impl StopChannel {
    pub(crate) fn new(token: &StopToken) -> StopChannel {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let guard = token.on_stop(move || drop(tx));
        StopChannel { rx, _guard: guard }
    }

    /// Sleeps until `deadline` (`None`: for ever), the stop, or a kick
    /// (`Ok(false)`: a pause request; the caller parks and sleeps on).
    pub(crate) fn sleep_kickable(
        &self,
        token: &StopToken,
        deadline: Option<Instant>,
        kick: &Receiver<()>,
    ) -> Result<bool, Stopped> {
        if token.stop_requested() {
            return Err(Stopped);
        }
        match deadline {
            Some(d) => crossbeam_channel::select! {
                recv(self.rx) -> _ => Err(Stopped),
                recv(kick) -> _ => Ok(false),
                default(d.saturating_duration_since(Instant::now())) => Ok(true),
            },
            None => crossbeam_channel::select! {
                recv(self.rx) -> _ => Err(Stopped),
                recv(kick) -> _ => Ok(false),
            },
        }
    }

    /// `recv` that gives up at `deadline` (`RecvError::Timeout`; `None`:
    /// never) and returns `Ok(None)` on a kick (a pause request).
    pub(crate) fn recv_kickable<M>(
        &self,
        token: &StopToken,
        rx: &Receiver<M>,
        deadline: Option<Instant>,
        kick: &Receiver<()>,
    ) -> Result<Option<M>, RecvError> {
        if token.stop_requested() {
            return Err(RecvError::Stopped);
        }
        match deadline {
            Some(d) => crossbeam_channel::select! {
                recv(rx) -> msg => msg.map(Some).map_err(|_| RecvError::Disconnected),
                recv(self.rx) -> _ => Err(RecvError::Stopped),
                recv(kick) -> _ => Ok(None),
                default(d.saturating_duration_since(Instant::now())) => Err(RecvError::Timeout),
            },
            None => crossbeam_channel::select! {
                recv(rx) -> msg => msg.map(Some).map_err(|_| RecvError::Disconnected),
                recv(self.rx) -> _ => Err(RecvError::Stopped),
                recv(kick) -> _ => Ok(None),
            },
        }
    }
}

/// Why [`Context::recv`](crate::Context::recv) returned without a message.
///
/// # Examples
///
/// ```
/// use threadward::RecvError;
///
/// let t = threadward::spawn("rx", |cx| {
///     let (tx, rx) = crossbeam_channel::unbounded::<u32>();
///     drop(tx);
///     cx.recv(&rx)
/// })
/// .unwrap();
/// assert_eq!(t.join().unwrap(), Err(RecvError::Disconnected));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The thread's (or job's) stop was requested.
    #[error("stop requested")]
    Stopped,
    /// Every sender was dropped and the channel is empty.
    #[error("channel disconnected")]
    Disconnected,
    /// The timeout of [`recv_timeout`](crate::Context::recv_timeout) passed.
    #[error("timed out")]
    Timeout,
}

impl From<Stopped> for RecvError {
    fn from(_: Stopped) -> RecvError {
        RecvError::Stopped
    }
}

/// A condvar wait while `cond` holds that gives up at `deadline` (`None`:
/// never) and sees a stop within `CONDVAR_POLL_MAX`;
/// the flag says whether it timed out (the condition still held).
pub(crate) fn condvar_wait_while_until<'a, U, F>(
    token: &StopToken,
    cv: &Condvar,
    mut guard: MutexGuard<'a, U>,
    deadline: Option<Instant>,
    mut cond: F,
) -> Result<(MutexGuard<'a, U>, bool), Stopped>
where
    F: FnMut(&mut U) -> bool,
{
    let mut slice = Duration::from_millis(1);
    loop {
        if token.stop_requested() {
            return Err(Stopped);
        }
        if !cond(&mut *guard) {
            return Ok((guard, false));
        }
        let mut wait = slice;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok((guard, true));
            }
            wait = wait.min(left);
        }
        guard = cv
            .wait_timeout(guard, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        slice = (slice * 2).min(CONDVAR_POLL_MAX);
    }
}
