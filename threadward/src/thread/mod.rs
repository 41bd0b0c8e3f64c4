//! Managed threads: kthread_run / kthread_stop for user space.
//!
//! [`Builder`] starts a named OS thread whose body gets a [`Context`];
//! [`Thread`] owns it (stop, join, drop = stop + join); [`Stopper`] is a
//! cloneable, `Sync` handle for stopping and waiting from anywhere.

mod builder;
mod context;
mod handle;
mod stopper;

pub use builder::{spawn, Builder};
pub use context::Context;
pub use handle::{stop_all, Thread, ThreadError};
pub use stopper::Stopper;

pub(crate) use builder::spawn_worker;

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
