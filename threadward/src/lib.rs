//! threadward: managed OS threads for services that run many of them.
//!
//! What the Linux kthread API and workqueues give kernel code, for user
//! space:
//!
//! * **Stop signalling** — [`StopSource`], [`StopToken`], [`StopCallback`],
//!   [`Stopped`]: a stop is requested once, observed by tokens, and runs
//!   registered callbacks that unblock whatever the thread waits in.
//! * **Managed threads** — [`spawn`], [`Builder`], [`Thread`], [`Stopper`],
//!   [`stop_all`]: named threads whose body gets a [`Context`].
//!   [`Thread::stop`] is `kthread_stop`: request, wake, wait, and the body's
//!   value back. [`Context::should_stop`] is `kthread_should_stop`.
//! * **Stop-aware waits** on [`Context`]: [`sleep`](Context::sleep),
//!   [`wait_while`](Context::wait_while), [`recv`](Context::recv),
//!   [`wait_readable`](Context::wait_readable) /
//!   [`wait_writable`](Context::wait_writable),
//!   [`pause_point`](Context::pause_point); each returns `Err(Stopped)` when
//!   the thread is stopped.
//! * **Pools** — [`Pool`], [`PoolBuilder`], [`Job`], [`Concurrency`],
//!   [`JobHint`], [`Context::blocking`]: concurrency-managed pools (the
//!   kernel's cmwq in user space) for jobs that may block indefinitely,
//!   with cancellation and a shutdown that never waits past its deadline.
//! * **Stages** — [`Stages`]: ordered start-up with reverse undo of exactly
//!   what started.
//! * **Registry** — [`registry::lookup`], [`registry::snapshot`] and
//!   [`ThreadId`]s that never name a later thread.
//!
//! # Limits
//!
//! Linux caps a process's memory mappings (`vm.max_map_count`, 65 530 by
//! default) and every thread needs about four; past ~16 000 threads std's
//! thread start would abort the process. threadward counts its threads
//! against that budget and refuses one that would not fit with
//! [`std::io::ErrorKind::WouldBlock`] (EAGAIN), as the OS does when it is
//! out of threads: pools keep the job queued for their existing workers.
//!
//! # Why stopping an exited thread is safe here
//!
//! `kthread_stop` on a task that already exited touches freed memory, or
//! worse a new task that reused it (the XPC discovery-thread problem). Here
//! every handle ([`Thread`], [`Stopper`], the thread's own [`Context`])
//! shares ownership of the thread's record, so a stop after exit finds the
//! record alive and marked finished: `request_stop` records the request
//! (returning `true` for the first one, as always) and has nothing left to
//! wake, and [`Thread::stop`] returns the stored value at once. A bare [`ThreadId`]
//! holds nothing; it carries a generation, so [`registry::lookup`] of an
//! exited thread's id is `None` even after its slot was reused.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! // A long-lived service thread, stopped at teardown.
//! let heartbeat = threadward::spawn("heartbeat", |cx| {
//!     let mut beats = 0u64;
//!     while cx.sleep(Duration::from_millis(1)).is_ok() {
//!         beats += 1;
//!     }
//!     beats
//! })?;
//! // A one-shot thread that finishes on its own; stopping it later is safe.
//! let discovery = threadward::spawn("discovery", |_| 3)?;
//! std::thread::sleep(Duration::from_millis(10));
//! assert_eq!(discovery.stop().unwrap(), 3);
//! assert!(heartbeat.stop().unwrap() > 0);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # A tour, one example per part
//!
//! **Waits and I/O** ([`Context`], [`Io`]): a connection read line by line;
//! a stop ends the read even mid-line.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::os::unix::net::UnixStream;
//!
//! let (ours, mut peer) = UnixStream::pair()?;
//! let reader = threadward::spawn("conn", move |cx| {
//!     let mut lines = BufReader::new(cx.io(ours)?);
//!     let mut n = 0;
//!     let mut line = String::new();
//!     while lines.read_line(&mut line)? > 0 {
//!         n += 1;
//!         line.clear();
//!     }
//!     Ok::<_, std::io::Error>(n)
//! })?;
//! peer.write_all(b"one\ntwo\nthr")?;
//! std::thread::sleep(std::time::Duration::from_millis(20));
//! assert!(threadward::is_stopped(&reader.stop().unwrap().unwrap_err()));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! **Stops** ([`StopSource`], [`Builder::stop_on`]): a service-wide stop
//! that also ends every connection thread, each still stoppable alone.
//!
//! ```
//! use std::time::Duration;
//!
//! let service = threadward::StopSource::new();
//! let conns: Vec<_> = (0..3)
//!     .map(|i| {
//!         threadward::Builder::new()
//!             .name(format!("conn-{i}"))
//!             .stop_on(service.token())
//!             .spawn(|cx| cx.sleep(Duration::from_secs(60)))
//!     })
//!     .collect::<Result<_, _>>()?;
//! service.request_stop();
//! for c in conns {
//!     assert_eq!(c.join().unwrap(), Err(threadward::Stopped));
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! **Pools** ([`Pool`]): jobs that may block, a job cancelled when its
//! guard drops, and a shutdown that reports what did not stop.
//!
//! ```
//! use std::time::Duration;
//!
//! let pool = threadward::Pool::builder().name("io").build()?;
//! let answer = pool.spawn(|_| 42)?;
//! let _long = pool.spawn(|cx| cx.sleep(Duration::from_secs(60)))?.cancel_on_drop();
//! assert_eq!(answer.join(), Ok(42));
//! drop(_long); // cancelled or stopped here
//! assert!(pool.shutdown(Duration::from_secs(1)).stragglers.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Stages** ([`Stages`]): start in order, undo exactly what started, in
//! reverse.
//!
//! ```
//! use std::time::Duration;
//!
//! let mut stages = threadward::Stages::new("svc");
//! let config: u64 = stages.start_no_undo("config", || "7".parse())?;
//! stages.thread("worker", Duration::from_secs(1), move || {
//!     threadward::spawn("worker", move |cx| while cx.sleep(Duration::from_millis(config)).is_ok() {})
//! })?;
//! let report = stages.shutdown(Duration::from_secs(1));
//! assert_eq!(report.undone.len(), 2);
//! assert!(report.is_clean());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Registry** ([`registry::snapshot`]): every managed thread and pool,
//! what each waits in, and incidents no call could report.
//!
//! ```
//! let t = threadward::spawn("idle", |cx| cx.sleep(std::time::Duration::from_secs(60)))?;
//! let snap = threadward::registry::snapshot();
//! assert!(snap.threads.iter().any(|i| i.id == t.id()));
//! println!("{snap}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The pool's concurrency protocol is written up in [`pool_protocol`].
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

/// The crate README's example runs as a doctest (the workspace README
/// carries the same example; `xpc-sim/tests/cli.rs` checks they match).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The pool's concurrency protocol: states, who wakes whom, what each
/// lock guards, and the concurrency management (the write-up kept next to
/// the code, `src/pool/README.md`).
pub mod pool_protocol {
    #![doc = include_str!("pool/README.md")]
}

mod io;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod pool;
mod record;
pub mod registry;
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub mod signal;
mod stages;
mod stop;
mod sync;
mod thread;
mod wait;

pub use io::{is_stopped, Accept, Io};
/// The channels [`Context::recv`] waits on, re-exported so a caller needs
/// no separate dependency (crossbeam-channel, the field's standard MPMC
/// channel).
///
/// # Examples
///
/// ```
/// let (tx, rx) = threadward::channel::bounded::<u32>(1);
/// tx.send(1).unwrap();
/// let t = threadward::spawn("rx", move |cx| cx.recv(&rx)).unwrap();
/// assert_eq!(t.join().unwrap(), Ok(1));
/// ```
pub mod channel {
    pub use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
}
pub use pool::{
    Concurrency, Job, JobError, JobGuard, JobHint, JobId, JobKind, JobSet, JoinNextError, MapError,
    Pool, PoolBuilder, PoolStats, Queue, ShutdownReport, SpawnError, Straggler, DEFAULT_STACK_SIZE,
};
pub use registry::ThreadId;
pub use stages::{Degraded, StageError, Stages, StagesReport, UndoOutcome, UndoneStage};
pub use stop::{StopCallback, StopFuture, StopSource, StopToken, Stopped};
pub use thread::{spawn, stop_all, Builder, Context, Stopper, Thread, ThreadError};
pub use wait::RecvError;
