//! Managed threads: kthread_run / kthread_stop for user space.
//!
//! [`Builder`] starts a named OS thread whose body gets a [`Context`];
//! [`Thread`] owns it (stop, join, drop = stop + join); [`Stopper`] is a
//! cloneable, `Sync` handle for stopping and waiting from anywhere.

pub(crate) mod budget;
mod builder;
mod context;
mod handle;
mod stopper;

pub use builder::{spawn, Builder};
pub(crate) use context::BlockHook;
pub use context::Context;
pub use handle::{stop_all, Thread, ThreadError};
pub use stopper::Stopper;

pub(crate) use builder::{spawn_service, spawn_worker, validate};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::stop::StopSource;
use crate::sync::Latch;

/// Text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Requests every stop in `sources` and returns by `deadline` whatever
/// their callbacks do; returns how many of the requests this call won
/// (among those done by the deadline).
///
/// Without a deadline the requests run here. With one, they run on a
/// short-lived helper thread (one thread creation, ~30 µs) that this call
/// waits for until the deadline: a callback that blocks then delays only
/// the helper, which finishes the remaining requests on its own. If the OS
/// refuses the helper, the requests run here.
pub(crate) fn request_stops_by(sources: Vec<StopSource>, deadline: Option<Instant>) -> usize {
    if deadline.is_none() || sources.is_empty() {
        return sources.iter().filter(|s| s.request_stop()).count();
    }
    struct Progress {
        sources: Vec<StopSource>,
        won: AtomicUsize,
        done: Latch,
    }
    impl Progress {
        fn run(&self) {
            for s in &self.sources {
                if s.request_stop() {
                    self.won.fetch_add(1, Ordering::SeqCst);
                }
            }
            self.done.set();
        }
    }
    let progress = std::sync::Arc::new(Progress {
        sources,
        won: AtomicUsize::new(0),
        done: Latch::new(),
    });
    let p = progress.clone();
    let helper = std::thread::Builder::new()
        .name("threadward-stop".into())
        .stack_size(64 * 1024)
        .spawn(move || p.run());
    if let Err(e) = helper {
        tracing::warn!(error = %e, "no helper thread for stop requests; requesting them here");
        progress.run();
    }
    progress.done.wait_deadline(deadline);
    progress.won.load(Ordering::SeqCst)
}
