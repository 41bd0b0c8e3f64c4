//! Stop on SIGINT/SIGTERM in one call (feature `signal`).
//!
//! The handler (installed through `signal-hook`, the field's standard safe
//! signal registration) only sets a flag and writes a byte to a socket; a
//! managed thread named `threadward-signal` waits on the other end
//! stop-aware and requests the stop from ordinary code, so stop callbacks
//! never run inside a signal handler. The guard says which signal came
//! first ([`SignalStop::received`]) and the exit code a shell expects for
//! it ([`SignalStop::exit_code`]: 128 + the signal's number, 130 for
//! SIGINT, 143 for SIGTERM). Opt in to "a second signal ends the process
//! at once" with [`StopOnSignals::second_signal_exits`].
//!
//! A `main` stopped by a signal, waiting without polling:
//!
//! ```no_run
//! use threadward::signal::{stop_on_signals, SIGINT, SIGTERM};
//!
//! fn main() -> std::io::Result<()> {
//!     let service = threadward::StopSource::new();
//!     let signals = stop_on_signals(&service, &[SIGINT, SIGTERM])?;
//!     // ... start the service's threads and pools on service.token() ...
//!     service.token().wait();
//!     // ... shut the pools down ...
//!     std::process::exit(signals.exit_code().unwrap_or(0));
//! }
//! ```

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::SigId;

/// The signal numbers, re-exported so a program needs no direct
/// `signal-hook` dependency.
pub use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

use crate::stop::StopSource;
use crate::thread::Thread;

/// Requests a stop of `source` when the process gets one of `signals`
/// (shorthand for [`StopOnSignals::new(source, signals).install()`](StopOnSignals::install)).
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
/// use threadward::signal::{stop_on_signals, SIGINT, SIGTERM};
///
/// let service = threadward::StopSource::new();
/// let signals = stop_on_signals(&service, &[SIGINT, SIGTERM]).unwrap();
/// // ... start threads with Builder::stop_on(service.token()) ...
/// assert_eq!(signals.received(), None); // no signal yet
/// ```
pub fn stop_on_signals(source: &StopSource, signals: &[i32]) -> io::Result<SignalStop> {
    StopOnSignals::new(source, signals).install()
}

/// What [`stop_on_signals`] installs, with its options.
///
/// # Examples
///
/// ```
/// use threadward::signal::{StopOnSignals, SIGINT, SIGTERM};
///
/// let service = threadward::StopSource::new();
/// let _signals = StopOnSignals::new(&service, &[SIGINT, SIGTERM])
///     .second_signal_exits()
///     .install()
///     .unwrap();
/// ```
#[derive(Debug)]
pub struct StopOnSignals {
    source: StopSource,
    signals: Vec<i32>,
    second_exits: bool,
}

impl StopOnSignals {
    /// Stops `source` on any of `signals`.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let _s = threadward::signal::StopOnSignals::new(&service, &[threadward::signal::SIGTERM]);
    /// ```
    pub fn new(source: &StopSource, signals: &[i32]) -> StopOnSignals {
        StopOnSignals {
            source: source.clone(),
            signals: signals.to_vec(),
            second_exits: false,
        }
    }

    /// A second one of the signals, after the first requested the stop,
    /// ends the process at once with that signal's default action (the
    /// handler restores the default disposition and re-raises, so the shell
    /// sees the process killed by the signal): the user's second Ctrl-C
    /// when a shutdown hangs.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let _s = threadward::signal::StopOnSignals::new(&service, &[threadward::signal::SIGINT])
    ///     .second_signal_exits();
    /// ```
    pub fn second_signal_exits(mut self) -> StopOnSignals {
        self.second_exits = true;
        self
    }

    /// Installs the handlers and starts the watcher thread.
    ///
    /// # Errors
    ///
    /// As [`stop_on_signals`]; nothing stays installed on error.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let guard = threadward::signal::StopOnSignals::new(&service, &[threadward::signal::SIGUSR1])
    ///     .install()
    ///     .unwrap();
    /// drop(guard); // uninstalled
    /// ```
    pub fn install(self) -> io::Result<SignalStop> {
        // signal-hook panics on these; a clear error instead.
        if let Some(sig) = self
            .signals
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
        let mut ids = Installed(Vec::new());
        // Set by the first of the signals; with `second_exits`, a signal
        // that finds it set takes the default action.
        let any = Arc::new(AtomicBool::new(false));
        let flags: Vec<(i32, Arc<AtomicBool>)> = self
            .signals
            .iter()
            .map(|&s| (s, Arc::new(AtomicBool::new(false))))
            .collect();
        for (sig, flag) in &flags {
            if self.second_exits {
                // Before the flag: the first signal finds `any` unset.
                ids.0.push(signal_hook::flag::register_conditional_default(
                    *sig,
                    any.clone(),
                )?);
            }
            ids.0.push(signal_hook::flag::register(*sig, flag.clone())?);
            ids.0.push(signal_hook::flag::register(*sig, any.clone())?);
            // Last: when the watcher wakes, this signal's flag is set.
            ids.0.push(signal_hook::low_level::pipe::register(
                *sig,
                tx.try_clone()?,
            )?);
        }
        let received = Arc::new(AtomicI32::new(0));
        let (src, got) = (self.source.clone(), received.clone());
        let watcher = crate::spawn("threadward-signal", move |cx| {
            let mut io = cx.io(&mut rx)?;
            // Keeps reading while installed: a later signal finds a reader
            // (no EPIPE, no SIGPIPE) and is a no-op stop request.
            let mut byte = [0u8; 16];
            while io.read(&mut byte)? > 0 {
                if got.load(Ordering::SeqCst) == 0 {
                    if let Some((sig, _)) = flags.iter().find(|(_, f)| f.load(Ordering::SeqCst)) {
                        let _ = got.compare_exchange(0, *sig, Ordering::SeqCst, Ordering::SeqCst);
                    }
                }
                if src.request_stop() {
                    let signal = got.load(Ordering::SeqCst);
                    tracing::info!(signal, "signal received: stop requested");
                }
            }
            Ok(())
        })?;
        Ok(SignalStop {
            ids: std::mem::take(&mut ids.0),
            received,
            watcher: Some(watcher),
        })
    }
}

/// Handlers registered so far: unregistered if the install fails.
struct Installed(Vec<SigId>);

impl Drop for Installed {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Keeps the handlers of [`stop_on_signals`] installed, and says which
/// signal came.
#[must_use = "dropping the guard uninstalls the signal handlers at once"]
#[derive(Debug)]
pub struct SignalStop {
    ids: Vec<SigId>,
    /// The first of the signals received (0: none yet).
    received: Arc<AtomicI32>,
    watcher: Option<Thread<io::Result<()>>>,
}

impl SignalStop {
    /// The first of the signals that arrived, once the stop it requested
    /// is seen by the watcher (`None` before).
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let signals = threadward::signal::stop_on_signals(&service, &[threadward::signal::SIGUSR1]).unwrap();
    /// assert_eq!(signals.received(), None);
    /// ```
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// The conventional exit code for the signal received: 128 + its
    /// number (130 for SIGINT, 143 for SIGTERM), as a shell reports a
    /// process a signal ended. `None` if no signal came.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let signals = threadward::signal::stop_on_signals(&service, &[threadward::signal::SIGINT]).unwrap();
    /// // ... service.token().wait() ...
    /// let code = signals.exit_code().unwrap_or(0); // 130 after a Ctrl-C
    /// # assert_eq!(code, 0);
    /// ```
    pub fn exit_code(&self) -> Option<i32> {
        self.received().map(|s| 128 + s)
    }
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

/// Calls `sink` with a [`snapshot`](crate::registry::snapshot) of every
/// managed thread and pool each time the process gets `signal` (as Java
/// and Go print their threads on SIGQUIT), from a watcher thread named
/// `threadward-dump`, never inside the signal handler. The library prints
/// nothing itself: the sink decides (stderr, a log, a file). Dropping the
/// guard uninstalls the handler and ends the watcher.
///
/// # Errors
///
/// As [`stop_on_signals`].
///
/// # Examples
///
/// ```
/// use threadward::signal::{snapshot_on_signal, SIGQUIT};
///
/// let _dump = snapshot_on_signal(SIGQUIT, |snap| eprintln!("{snap}")).unwrap();
/// // `kill -QUIT <pid>` now prints every managed thread and pool.
/// ```
pub fn snapshot_on_signal<F>(signal: i32, sink: F) -> io::Result<SignalDump>
where
    F: Fn(&crate::registry::Snapshot) + Send + 'static,
{
    if signal_hook::consts::FORBIDDEN.contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signal} cannot be handled (SIGKILL, SIGSTOP and synchronous faults)"),
        ));
    }
    let (mut rx, tx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    let mut ids = Installed(Vec::new());
    ids.0
        .push(signal_hook::low_level::pipe::register(signal, tx)?);
    let watcher = crate::spawn("threadward-dump", move |cx| {
        let mut io = cx.io(&mut rx)?;
        let mut byte = [0u8; 16];
        while io.read(&mut byte)? > 0 {
            let snap = crate::registry::snapshot();
            // User code: a panicking sink is contained, the watcher goes on.
            crate::sync::contain("a snapshot sink", || sink(&snap));
        }
        Ok(())
    })?;
    Ok(SignalDump {
        ids: std::mem::take(&mut ids.0),
        watcher: Some(watcher),
    })
}

/// Keeps the handler of [`snapshot_on_signal`] installed.
#[must_use = "dropping the guard uninstalls the signal handler at once"]
#[derive(Debug)]
pub struct SignalDump {
    ids: Vec<SigId>,
    watcher: Option<Thread<io::Result<()>>>,
}

impl Drop for SignalDump {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if let Some(w) = self.watcher.take() {
            let _ = w.stop();
        }
    }
}
