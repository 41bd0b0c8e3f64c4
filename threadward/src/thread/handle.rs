use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::{ThreadId, ThreadRecord};
use crate::sync::{self, Mutex};
use crate::thread::Context;
use crate::thread::Stopper;

/// Why [`Thread::join`] or [`Thread::stop`] returned no value.
///
/// # Examples
///
/// ```
/// use threadward::ThreadError;
///
/// let t = threadward::spawn("doomed", |_| -> u32 { panic!("boom") }).unwrap();
/// match t.join() {
///     Err(ThreadError::Panicked { name, message }) => {
///         assert_eq!(name, "doomed");
///         assert_eq!(message, "boom");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadError {
    /// The thread's body panicked.
    #[error("thread {name:?} panicked: {message}")]
    Panicked {
        /// The thread's full name.
        name: String,
        /// The panic message (`&str` or `String` payloads; a placeholder otherwise).
        message: String,
    },
    /// The thread tried to stop, join or wait for itself.
    #[error("thread {name:?} cannot join or stop itself")]
    SelfJoin {
        /// The thread's full name.
        name: String,
    },
}

/// An owned managed thread (`kthread_run`'s result): stop it, join it, or
/// drop it (which stops and joins).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let t = threadward::spawn("service", |cx| {
///     let mut served = 0u32;
///     while cx.sleep(Duration::from_millis(1)).is_ok() {
///         served += 1;
///     }
///     served
/// })
/// .unwrap();
/// std::thread::sleep(Duration::from_millis(10));
/// let served = t.stop().unwrap(); // request + wake + wait, value back
/// assert!(served > 0);
/// ```
#[must_use = "dropping a Thread stops it and waits for it; call detach() to let it run on"]
pub struct Thread<T> {
    /// The thread's non-owning handle (and its record); `Thread` adds the
    /// value and the join.
    stopper: Stopper,
    /// The body's outcome, stored by the thread before it is marked
    /// finished (so it can be taken without joining the OS thread, whose
    /// thread-local destructors may still run).
    packet: Packet<T>,
    handle: Option<JoinHandle<()>>,
    on_drop: OnDrop,
}

/// What dropping a [`Thread`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDrop {
    /// Request a stop and join (like C++ `jthread`).
    StopAndJoin,
    /// Request a stop and detach: a handle given back by a bounded wait
    /// (`join_timeout`, `stop_timeout`), so `let _ = t.stop_timeout(d)`
    /// stays bounded.
    StopAndDetach,
}

/// Where a thread leaves its body's outcome.
pub(crate) type Packet<T> = Arc<Mutex<Option<Result<T, ThreadError>>>>;

impl<T> Thread<T> {
    pub(crate) fn new(rec: Arc<ThreadRecord>, packet: Packet<T>, handle: JoinHandle<()>) -> Self {
        Thread {
            stopper: Stopper::from_record(rec),
            packet,
            handle: Some(handle),
            on_drop: OnDrop::StopAndJoin,
        }
    }

    fn rec(&self) -> &ThreadRecord {
        self.stopper.record()
    }

    /// Takes the outcome the finished body left.
    fn take_outcome(&self) -> Result<T, ThreadError> {
        sync::lock(&self.packet).take().unwrap_or_else(|| {
            Err(ThreadError::Panicked {
                name: self.rec().name.to_string(),
                message: "the thread ended without leaving a result".to_owned(),
            })
        })
    }

    fn self_join(&self) -> ThreadError {
        ThreadError::SelfJoin {
            name: self.rec().name.to_string(),
        }
    }

    /// The thread's id (stays unique after it exits).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = threadward::spawn("a", |_| ()).unwrap();
    /// let b = threadward::spawn("b", |_| ()).unwrap();
    /// assert_ne!(a.id(), b.id());
    /// ```
    pub fn id(&self) -> ThreadId {
        self.stopper.id()
    }

    /// The thread's full name.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("partition-contact-17", |_| ()).unwrap();
    /// assert_eq!(t.name(), "partition-contact-17");
    /// ```
    pub fn name(&self) -> &str {
        self.stopper.name()
    }

    /// Requests a stop without waiting; `true` only for the call that made
    /// the request.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("rs", |cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// assert!(t.request_stop());
    /// assert!(t.join().unwrap().is_err());
    /// ```
    pub fn request_stop(&self) -> bool {
        self.stopper.request_stop()
    }

    /// Whether the body has returned (or panicked).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("quick", |_| ()).unwrap();
    /// t.stopper().wait().unwrap();
    /// assert!(t.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.stopper.is_finished()
    }

    /// A cloneable handle for stopping, pausing and waiting from other
    /// threads. `id`, `name`, `request_stop` and `is_finished` here are
    /// that handle's; `Thread` itself only adds what owning the thread
    /// means: its value, `join`, and stop-and-join on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("st", |cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// let st = t.stopper();
    /// std::thread::spawn(move || st.request_stop()).join().unwrap();
    /// assert!(t.join().unwrap().is_err());
    /// ```
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits for the thread to finish and returns its value.
    ///
    /// The thread's exit synchronizes with this function returning; the OS
    /// thread is gone when it returns.
    ///
    /// # Errors
    ///
    /// [`ThreadError::Panicked`] if the body panicked;
    /// [`ThreadError::SelfJoin`] if called on the thread itself (the thread
    /// is then detached, with a stop requested).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("j", |_| "value").unwrap();
    /// assert_eq!(t.join().unwrap(), "value");
    /// ```
    pub fn join(mut self) -> Result<T, ThreadError> {
        if self.rec().is_current() {
            return Err(self.self_join());
        }
        self.rec().finished.wait();
        if let Some(handle) = self.handle.take() {
            // Thread-local destructors run after the body; a panic there
            // aborts the process, so there is nothing to report here.
            let _ = handle.join();
        }
        self.take_outcome()
    }

    /// Waits up to `timeout` for the thread to finish (any `Duration`,
    /// `Duration::MAX` included).
    ///
    /// Returns by the deadline whatever the thread does: once the body has
    /// returned, its value comes back even if the thread's thread-local
    /// destructors are still running (the OS thread is then detached and
    /// ends on its own).
    ///
    /// # Errors
    ///
    /// `Err(self)` gives the handle back if the thread is still running.
    /// That handle still joins with [`join`](Thread::join), but dropping it
    /// requests a stop and *detaches* instead of waiting: the bound the
    /// caller chose holds even for `let _ = t.join_timeout(d)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let t = threadward::spawn("slow", |cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// let t = t.join_timeout(Duration::from_millis(5)).unwrap_err(); // still running
    /// t.request_stop();
    /// assert!(t.join_timeout(Duration::from_secs(10)).is_ok());
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, ThreadError>, Thread<T>> {
        self.join_deadline(sync::deadline_after(timeout))
    }

    /// Waits for the thread's outcome like [`join`](Thread::join), or until
    /// the *caller's* stop (`cx`) is requested; in a pool job the wait
    /// counts as blocking.
    ///
    /// # Errors
    ///
    /// `Err(self)` gives the handle back if the caller was stopped first.
    ///
    /// # Examples
    ///
    /// ```
    /// let worker = threadward::spawn("worker", |cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// let boss = threadward::spawn("boss", move |cx| match worker.join_or_stop(cx) {
    ///     Ok(_) => "worker done",
    ///     Err(worker) => {
    ///         worker.request_stop();
    ///         "stopped first"
    ///     }
    /// })
    /// .unwrap();
    /// assert_eq!(boss.stop().unwrap(), "stopped first");
    /// ```
    pub fn join_or_stop(self, cx: &Context) -> Result<Result<T, ThreadError>, Thread<T>> {
        if self.rec().is_current() {
            return Ok(Err(self.self_join()));
        }
        if !self.stopper.finished_or_stop(cx) {
            return Err(self);
        }
        self.join_deadline(None)
    }

    fn join_deadline(
        mut self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, ThreadError>, Thread<T>> {
        if self.rec().is_current() {
            return Ok(Err(self.self_join()));
        }
        if !self.rec().finished.wait_deadline(deadline) {
            // The caller chose a bound: dropping what we give back must not
            // wait without one.
            self.on_drop = OnDrop::StopAndDetach;
            return Err(self);
        }
        // Detached, not joined: the OS thread may still run its
        // thread-local destructors (std's `is_finished` is already true
        // then, so even a "finished" handle's join could block).
        drop(self.handle.take());
        Ok(self.take_outcome())
    }

    /// Requests a stop, wakes the thread out of any stop-aware wait, and
    /// waits for its value (`kthread_stop`). On a thread that already
    /// returned, the value comes back at once.
    ///
    /// # Errors
    ///
    /// As [`join`](Thread::join).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("oneshot", |_| 7).unwrap();
    /// std::thread::sleep(std::time::Duration::from_millis(5)); // it has exited
    /// assert_eq!(t.stop().unwrap(), 7);
    /// ```
    pub fn stop(self) -> Result<T, ThreadError> {
        self.request_stop();
        self.join()
    }

    /// [`stop`](Thread::stop) with a bound on the wait: returns by the
    /// deadline whatever the thread's stop callbacks or thread-local
    /// destructors do (a slow callback finishes on a helper thread).
    ///
    /// # Errors
    ///
    /// `Err(self)` gives the handle back if the thread has not finished in
    /// time (the stop stays requested). Dropping that handle detaches the
    /// thread instead of waiting for it, so `let _ = t.stop_timeout(d)`
    /// returns by `d`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let t = threadward::spawn("st", |cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// let out = t.stop_timeout(Duration::from_secs(10)).expect("stopped in time");
    /// assert!(out.unwrap().is_err());
    /// ```
    pub fn stop_timeout(self, timeout: Duration) -> Result<Result<T, ThreadError>, Thread<T>> {
        let deadline = sync::deadline_after(timeout);
        super::request_stops_by(vec![self.rec().stop.clone()], deadline);
        self.join_deadline(deadline)
    }

    /// Lets the thread run on without an owner: dropping the returned
    /// nothing neither stops nor joins it. A [`Stopper`] taken before still
    /// works.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("free", |_| ()).unwrap();
    /// let st = t.stopper();
    /// t.detach();
    /// st.wait().unwrap();
    /// ```
    pub fn detach(mut self) {
        self.handle.take();
    }
}

impl<T> Drop for Thread<T> {
    /// Requests a stop and joins (like C++ `jthread`); from the thread
    /// itself, only requests the stop.
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        self.rec().request_stop();
        if self.rec().is_current() || self.on_drop == OnDrop::StopAndDetach {
            return;
        }
        let _ = handle.join();
        if let Some(Err(e)) = sync::lock(&self.packet).take() {
            tracing::warn!(thread = %self.rec().name, id = %self.rec().id, error = %e, "dropped thread ended with an error");
            sync::incident(
                sync::IncidentKind::DroppedThreadError,
                format!(
                    "dropped thread {} ({}) ended with an error: {e}",
                    self.rec().name,
                    self.rec().id
                ),
            );
        }
    }
}

impl<T> fmt::Debug for Thread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.rec().id)
            .field("name", &self.rec().name)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Stops many threads at once: requests every stop first, then joins each,
/// so the total time is about that of the slowest thread.
///
/// Results come back in the order of `threads`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let threads: Vec<_> = (0..8)
///     .map(|i| {
///         threadward::spawn(format!("w{i}"), move |cx| {
///             let _ = cx.sleep(Duration::from_secs(3600));
///             i
///         })
///         .unwrap()
///     })
///     .collect();
/// let values: Vec<_> = threadward::stop_all(threads).into_iter().map(Result::unwrap).collect();
/// assert_eq!(values, (0..8).collect::<Vec<_>>());
/// ```
pub fn stop_all<T>(threads: impl IntoIterator<Item = Thread<T>>) -> Vec<Result<T, ThreadError>> {
    let threads: Vec<Thread<T>> = threads.into_iter().collect();
    for t in &threads {
        t.request_stop();
    }
    threads.into_iter().map(Thread::join).collect()
}
