use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::record::{self, ThreadKind, ThreadRecord, ThreadState};
use crate::stop::StopSource;
use crate::sync::panic_message;
use crate::sync::{self, Mutex};
use crate::thread::handle::Packet;
use crate::thread::{budget, Context, Thread, ThreadError};

/// Linux keeps 15 bytes of a thread's name (plus the NUL).
const OS_NAME_MAX: usize = 15;

/// Configures and starts a managed thread.
///
/// # Examples
///
/// ```
/// let t = threadward::Builder::new()
///     .name("configured")
///     .stack_size(256 * 1024)
///     .spawn(|cx| cx.name().len())
///     .unwrap();
/// assert_eq!(t.join().unwrap(), 10);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    stop_on: Option<crate::stop::StopToken>,
}

impl Builder {
    /// A builder with the default name (`threadward`) and std's default
    /// stack size.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::Builder::new().spawn(|cx| cx.name().to_owned()).unwrap();
    /// assert_eq!(t.join().unwrap(), "threadward");
    /// ```
    pub fn new() -> Builder {
        Builder {
            name: None,
            stack_size: None,
            stop_on: None,
        }
    }

    /// Also stops the thread when `token`'s stop is requested (a
    /// service-wide token, say), in addition to its own handles' stops:
    /// the thread's stop state is a [child](crate::stop::StopToken::child) of
    /// `token`.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = threadward::StopSource::new();
    /// let t = threadward::Builder::new()
    ///     .name("conn")
    ///     .stop_on(service.token())
    ///     .spawn(|cx| cx.sleep(std::time::Duration::from_secs(60)))
    ///     .unwrap();
    /// service.request_stop();
    /// assert_eq!(t.join().unwrap(), Err(threadward::Stopped));
    /// ```
    pub fn stop_on(mut self, token: crate::stop::StopToken) -> Builder {
        self.stop_on = Some(token);
        self
    }

    /// Names the thread. The whole name is kept by threadward; the OS shows
    /// its first 15 bytes (cut at a character boundary).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::Builder::new().name("xpc-heartbeat-checker").spawn(|_| ()).unwrap();
    /// assert_eq!(t.name(), "xpc-heartbeat-checker");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the stack size in bytes (rounded up to whole pages; the OS may
    /// raise it to its minimum).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::Builder::new().stack_size(64 * 1024).spawn(|_| 1).unwrap();
    /// assert_eq!(t.join().unwrap(), 1);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the thread running `f`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for an empty name, a name containing a
    /// NUL byte, or a stack size that overflows when rounded to pages; the
    /// OS error (for example `WouldBlock`/EAGAIN when the OS refuses more
    /// threads, or a stack it cannot map). On error nothing stays
    /// registered.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = threadward::Builder::new().name("").spawn(|_| ()).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn spawn<F, T>(self, f: F) -> io::Result<Thread<T>>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = self.name.unwrap_or_else(|| "threadward".to_owned());
        let os = os_name(&name).to_owned();
        let packet: Packet<T> = Arc::new(Mutex::new(None));
        let their_packet = packet.clone();
        let spec = Spec {
            name: &name,
            os_name: os,
            kind: ThreadKind::Thread,
            stack_size: self.stack_size,
            stop: self
                .stop_on
                .as_ref()
                .map_or_else(StopSource::new, |t| t.child()),
        };
        let (rec, handle) = start(spec, move |rec| {
            let cx = Context::new(rec.clone(), rec.stop.token());
            rec.set_state(ThreadState::Running);
            let out = catch_unwind(AssertUnwindSafe(|| f(&cx)));
            drop(cx);
            let out = out.map_err(|payload| {
                let message = panic_message(&*payload);
                tracing::error!(thread = %rec.name, id = %rec.id, %message, "managed thread panicked");
                // The payload may panic on drop: contained (and leaked).
                sync::drop_payload(payload);
                ThreadError::Panicked {
                    name: rec.name.to_string(),
                    message,
                }
            });
            *sync::lock(&their_packet) = Some(out);
            // If the handle is gone (detached), the value drops here: user
            // code, contained so the exit bookkeeping still runs cleanly.
            sync::contain("the drop of a detached thread's value", move || {
                drop(their_packet)
            });
        })?;
        Ok(Thread::new(rec, packet, handle))
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// Starts a managed thread named `name` running `f`.
///
/// # Errors
///
/// As [`Builder::spawn`].
///
/// # Examples
///
/// ```
/// let t = threadward::spawn("answer", |_| 42).unwrap();
/// assert_eq!(t.join().unwrap(), 42);
/// ```
pub fn spawn<F, T>(name: impl Into<String>, f: F) -> io::Result<Thread<T>>
where
    F: FnOnce(&Context) -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().name(name).spawn(f)
}

/// Starts a pool worker: a registered thread of kind `PoolWorker` named
/// `{pool}-{no}`, whose OS name keeps the `-{no}` suffix visible.
pub(crate) fn spawn_worker(
    pool: Arc<str>,
    no: u64,
    stack_size: Option<usize>,
    body: impl FnOnce(&Arc<ThreadRecord>) + Send + 'static,
) -> io::Result<(Arc<ThreadRecord>, std::thread::JoinHandle<()>)> {
    let suffix = format!("-{no}");
    let name = format!("{pool}{suffix}");
    let spec = Spec {
        name: &name,
        os_name: os_name_with_suffix(&pool, &suffix),
        kind: ThreadKind::PoolWorker { pool },
        stack_size,
        stop: StopSource::new(),
    };
    start(spec, body)
}

/// Starts a process-wide pool service thread (kind `PoolService`).
pub(crate) fn spawn_service(
    name: &str,
    body: fn(),
) -> io::Result<(Arc<ThreadRecord>, std::thread::JoinHandle<()>)> {
    let spec = Spec {
        name,
        os_name: os_name(name).to_owned(),
        kind: ThreadKind::PoolService,
        stack_size: Some(128 * 1024),
        stop: StopSource::new(),
    };
    start(spec, move |rec| {
        rec.set_state(ThreadState::Running);
        body();
    })
}

pub(crate) fn validate(name: &str, stack_size: Option<usize>) -> io::Result<Option<usize>> {
    if name.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "thread name must not be empty",
        ));
    }
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("thread name {name:?} contains a NUL byte"),
        ));
    }
    let Some(size) = stack_size else {
        return Ok(None);
    };
    let page = rustix::param::page_size();
    // Round up ourselves: std's own rounding would overflow (and panic) on
    // absurd sizes instead of returning an error.
    match size.checked_add(page - 1) {
        Some(s) => Ok(Some(s / page * page)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("stack size {size} is too large"),
        )),
    }
}

/// The OS-visible prefix of `name`: at most 15 bytes, on a char boundary.
pub(crate) fn os_name(name: &str) -> &str {
    let mut end = name.len().min(OS_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// `prefix` cut short enough that `suffix` (a worker index) stays
/// visible in the 15 bytes the OS keeps.
pub(crate) fn os_name_with_suffix(prefix: &str, suffix: &str) -> String {
    let room = OS_NAME_MAX.saturating_sub(suffix.len());
    let mut end = prefix.len().min(room);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    let mut name = format!("{}{suffix}", &prefix[..end]);
    name.truncate(os_name(&name).len());
    name
}

/// What `start` needs to know of a new thread.
struct Spec<'a> {
    name: &'a str,
    os_name: String,
    kind: ThreadKind,
    stack_size: Option<usize>,
    /// The thread's stop state (a child of an outside token, or new).
    stop: StopSource,
}

/// A thread's exit bookkeeping, run by `Drop` so that it also runs when
/// the thread unwinds: release the registry slot, mark the thread finished
/// (waking `wait`/`join`), wake anyone in `pause`.
struct ExitGuard {
    rec: Arc<ThreadRecord>,
    started: Instant,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let r = &self.rec;
        r.kick.close();
        record::release(r.id);
        r.finished.set();
        {
            let _p = sync::lock(&r.pause);
            r.pause_cv.notify_all();
        }
        tracing::debug!(thread = %r.name, id = %r.id, ran = ?self.started.elapsed(), "thread exited");
    }
}

/// Registers, starts, and on exit releases one managed OS thread.
fn start<R: Send + 'static>(
    spec: Spec<'_>,
    body: impl FnOnce(&Arc<ThreadRecord>) -> R + Send + 'static,
) -> io::Result<(Arc<ThreadRecord>, std::thread::JoinHandle<R>)> {
    let stack_size = validate(spec.name, spec.stack_size)?;
    budget::reserve()?;
    let rec = record::register(Arc::from(spec.name), spec.kind, spec.stop);
    let mut builder = std::thread::Builder::new().name(spec.os_name);
    if let Some(s) = stack_size {
        builder = builder.stack_size(s);
    }
    let r = rec.clone();
    let spawned = builder.spawn(move || {
        r.enter();
        let _budget = budget::Held;
        let exit = ExitGuard {
            rec: r.clone(),
            started: Instant::now(),
        };
        // A stop also wakes anyone in `pause()` / `pause_point()`.
        let weak = Arc::downgrade(&r);
        let pause_waker = r.stop.token().on_stop(move || {
            if let Some(rec) = weak.upgrade() {
                let _p = sync::lock(&rec.pause);
                rec.pause_cv.notify_all();
            }
        });
        tracing::debug!(thread = %r.name, id = %r.id, "thread started");
        let out = body(&r);
        drop(pause_waker);
        drop(exit);
        out
    });
    match spawned {
        Ok(handle) => Ok((rec, handle)),
        Err(e) => {
            budget::release();
            record::release(rec.id);
            rec.finished.set();
            tracing::warn!(thread = %rec.name, error = %e, "OS refused to start a thread");
            Err(e)
        }
    }
}
