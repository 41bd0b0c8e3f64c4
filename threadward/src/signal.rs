//! Stop on SIGINT/SIGTERM in one call (feature `signal`).
//!
//! The handler (installed through `signal-hook`, the field's standard safe
//! signal registration) only writes a byte to a socket; a managed thread
//! named `threadward-signal` waits on the other end stop-aware and requests
//! the stop from ordinary code, so stop callbacks never run inside a
//! signal handler.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use signal_hook::SigId;

use crate::stop::StopSource;
use crate::thread::Thread;

/// Requests a stop of `source` when the process gets one of `signals`.
/// Dropping the returned guard unregisters the handlers (the signals'
/// earlier dispositions apply again) and ends the watcher thread.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] for a signal that cannot be handled
/// (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`); the OS error if a
/// handler, the socket pair or the thread cannot be made. Nothing stays
/// installed on error.
///
/// # Examples
///
/// ```
/// use signal_hook::consts::{SIGINT, SIGTERM};
///
/// let service = threadward::StopSource::new();
/// let _signals = threadward::signal::stop_on_signals(&service, &[SIGINT, SIGTERM]).unwrap();
/// // ... start threads with Builder::stop_on(service.token()) ...
/// # service.request_stop();
/// ```
pub fn stop_on_signals(source: &StopSource, signals: &[i32]) -> io::Result<SignalStop> {
    // signal-hook panics on these; a clear error instead.
    if let Some(sig) = signals
        .iter()
        .find(|s| signal_hook::consts::FORBIDDEN.contains(s))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {sig} cannot be handled (SIGKILL, SIGSTOP and synchronous faults)"),
        ));
    }
    let (mut rx, tx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    let mut ids = Vec::new();
    for &sig in signals {
        match signal_hook::low_level::pipe::register(sig, tx.try_clone()?) {
            Ok(id) => ids.push(id),
            Err(e) => {
                for id in ids {
                    signal_hook::low_level::unregister(id);
                }
                return Err(e);
            }
        }
    }
    let src = source.clone();
    let watcher = crate::spawn("threadward-signal", move |cx| {
        let mut io = match cx.io(&mut rx) {
            Ok(io) => io,
            Err(e) => return Err(e),
        };
        // Keeps reading while installed: a second signal finds a reader
        // (no EPIPE, no SIGPIPE) and is a no-op stop request. A program
        // that wants a second Ctrl-C to exit at once adds signal-hook's
        // `register_conditional_shutdown`.
        let mut byte = [0u8; 16];
        while io.read(&mut byte)? > 0 {
            if src.request_stop() {
                tracing::info!("signal received: stop requested");
            }
        }
        Ok(())
    });
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            for id in ids {
                signal_hook::low_level::unregister(id);
            }
            return Err(e);
        }
    };
    Ok(SignalStop {
        ids,
        watcher: Some(watcher),
    })
}

/// Keeps the handlers of [`stop_on_signals`] installed.
#[must_use = "dropping the guard uninstalls the signal handlers at once"]
#[derive(Debug)]
pub struct SignalStop {
    ids: Vec<SigId>,
    watcher: Option<Thread<io::Result<()>>>,
}

impl Drop for SignalStop {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if let Some(w) = self.watcher.take() {
            let _ = w.stop();
        }
    }
}
