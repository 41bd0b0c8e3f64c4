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

use std::time::Instant;

use crate::stop::StopSource;
use crate::sync::Latch;

/// Requests every stop in `sources` and returns by `deadline` whatever
/// their callbacks do; returns how many of the requests this call won.
///
/// Every stop flag is set here, before anything else: when this returns,
/// each source's `stop_requested()` is true and the call that won each
/// request has been counted. The callbacks (user code) run here without a
/// deadline; with one they run on a short-lived helper thread (one thread
/// creation, ~30 µs) that this call waits for until the deadline: a
/// callback that blocks delays only the helper, which finishes the rest on
/// its own. So after a bounded stop returned, a callback may still be
/// running, and a later `request_stop()` returns `false` at once without
/// waiting for it. If the OS refuses the helper, the callbacks run here.
pub(crate) fn request_stops_by(sources: Vec<StopSource>, deadline: Option<Instant>) -> usize {
    // Every flag first, here: a stop flag runs no user code, so by the time
    // this returns (whatever the deadline, zero included) every
    // `stop_requested()` says true. Only the callbacks (user code) may be
    // left to the helper.
    let won: Vec<StopSource> = sources.into_iter().filter(|s| s.mark_stopped()).collect();
    let n = won.len();
    if deadline.is_none() || won.is_empty() {
        won.iter().for_each(StopSource::run_stop_callbacks);
        return n;
    }
    struct Progress {
        sources: Vec<StopSource>,
        done: Latch,
    }
    impl Progress {
        fn run(&self) {
            self.sources.iter().for_each(StopSource::run_stop_callbacks);
            self.done.set();
        }
    }
    let progress = std::sync::Arc::new(Progress {
        sources: won,
        done: Latch::new(),
    });
    let p = progress.clone();
    let helper = std::thread::Builder::new()
        .name("threadward-stop".into())
        .stack_size(64 * 1024)
        .spawn(move || p.run());
    if let Err(e) = helper {
        tracing::warn!(error = %e, "no helper thread for stop callbacks; running them here");
        progress.run();
    }
    progress.done.wait_deadline(deadline);
    n
}
