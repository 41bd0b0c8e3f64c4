//! Job sets: many jobs spawned as a group, joined as they finish
//! (tokio's `JoinSet`, Java's `ExecutorCompletionService`), and the
//! one-call bounded batch [`Pool::map`].
//!
//! Each job of a set carries a small notice, moved into its closure: when
//! the closure has run (returned or panicked) or was dropped without
//! running (cancelled, shut down, refused), the notice's drop pushes the
//! job's id onto the set's ready queue and wakes a waiter. So a set learns
//! of every ending without polling, whatever the ending, and `join_next`
//! takes the oldest ended job and joins it (its result is stored right
//! after the closure returns: the join waits those few microseconds at
//! most). Every operation is O(1) per job: a map insert at spawn, a push
//! at the end, a pop and a map removal at the join; cancelling the set is
//! one cancel per job, with no stop state made for jobs that never look.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Job, JobError, JobHint, JobId, Pool, SpawnError};
use crate::sync::{self, Condvar, Mutex};
use crate::thread::Context;

/// Ended jobs of a set, in the order they ended.
struct Ready {
    ids: Mutex<VecDeque<u64>>,
    cv: Condvar,
    /// Jobs of the set whose closure is running now.
    running: AtomicUsize,
}

impl Ready {
    fn new() -> Ready {
        Ready {
            ids: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            running: AtomicUsize::new(0),
        }
    }

    /// A job ended (its notice dropped): queue its id, wake the waiters.
    fn push(&self, id: u64) {
        sync::lock(&self.ids).push_back(id);
        self.cv.notify_all();
    }

    /// The oldest ended job's id, waiting until `deadline` or until
    /// `give_up()` holds (checked at every wake-up).
    fn pop_wait(&self, deadline: Option<Instant>, give_up: impl Fn() -> bool) -> Option<u64> {
        let ids = sync::lock(&self.ids);
        let (mut ids, _) = sync::wait_until(&self.ids, &self.cv, ids, deadline, |q| {
            !q.is_empty() || give_up()
        });
        ids.pop_front()
    }
}

/// Moved into a set's job: its drop says the job ended.
struct Notice {
    ready: Arc<Ready>,
    id: u64,
}

impl Drop for Notice {
    fn drop(&mut self) {
        self.ready.push(self.id);
    }
}

/// Marks the job running while it lives.
struct Running<'a>(&'a Ready);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A group of pool jobs joined in the order they finish; dropping the set
/// cancels (or stops, if running) every job still in it.
///
/// # Examples
///
/// ```
/// use threadward::{JobSet, Pool};
///
/// let pool = Pool::builder().build().unwrap();
/// let mut set = JobSet::new();
/// for i in 0..10u64 {
///     set.spawn(&pool, move |_| i * i).unwrap();
/// }
/// let mut sum = 0;
/// while let Some((_id, result)) = set.join_next() {
///     sum += result.unwrap();
/// }
/// assert_eq!(sum, 285);
/// ```
pub struct JobSet<T> {
    jobs: HashMap<u64, Job<T>>,
    ready: Arc<Ready>,
}

impl<T: Send + 'static> JobSet<T> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let set: threadward::JobSet<u8> = threadward::JobSet::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> JobSet<T> {
        JobSet {
            jobs: HashMap::new(),
            ready: Arc::new(Ready::new()),
        }
    }

    /// Spawns `f` on `pool` into the set ([`Pool::spawn`]).
    ///
    /// # Errors
    ///
    /// As [`Pool::spawn`]; a refused job is not in the set.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// let id = set.spawn(&pool, |_| 1).unwrap();
    /// assert_eq!(set.join_next(), Some((id, Ok(1))));
    /// ```
    pub fn spawn<F>(&mut self, pool: &Pool, f: F) -> Result<JobId, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
    {
        self.spawn_hinted(pool, JobHint::Auto, f)
    }

    /// [`spawn`](Self::spawn) with a hint ([`Pool::spawn_hinted`]).
    ///
    /// # Errors
    ///
    /// As [`Pool::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// use threadward::JobHint;
    ///
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// set.spawn_hinted(&pool, JobHint::MayBlock, |_| std::thread::sleep(std::time::Duration::from_millis(1)))
    ///     .unwrap();
    /// assert!(set.join_next().unwrap().1.is_ok());
    /// ```
    pub fn spawn_hinted<F>(&mut self, pool: &Pool, hint: JobHint, f: F) -> Result<JobId, SpawnError>
    where
        F: FnOnce(&Context) -> T + Send + 'static,
    {
        let ready = self.ready.clone();
        let id = pool.next_job_id();
        let notice = Notice {
            ready: ready.clone(),
            id,
        };
        let spawned = pool.spawn_with_id(id, hint, move |cx| {
            let _notice = notice; // dropped last: after the result is made
            ready.running.fetch_add(1, Ordering::SeqCst);
            let _running = Running(&ready);
            f(cx)
        });
        match spawned {
            Ok(job) => {
                self.jobs.insert(id, job);
                Ok(JobId(id))
            }
            Err(e) => {
                // The refused closure was dropped, and its notice with it:
                // that id is no job of the set (a scan, on refusal only).
                sync::lock(&self.ready.ids).retain(|&x| x != id);
                Err(e)
            }
        }
    }

    /// Jobs in the set (not joined yet), finished or not.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// set.spawn(&pool, |_| ()).unwrap();
    /// assert_eq!(set.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the set holds no job.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(threadward::JobSet::<()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Jobs of the set that ended and wait to be joined.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// set.spawn(&pool, |_| ()).unwrap();
    /// pool.wait_idle();
    /// assert_eq!(set.finished(), 1);
    /// ```
    pub fn finished(&self) -> usize {
        sync::lock(&self.ready.ids).len()
    }

    /// Jobs of the set whose closure runs right now (the rest of
    /// [`len`](Self::len) is queued or finished).
    ///
    /// # Examples
    ///
    /// ```
    /// let set: threadward::JobSet<()> = threadward::JobSet::new();
    /// assert_eq!(set.running(), 0);
    /// ```
    pub fn running(&self) -> usize {
        self.ready.running.load(Ordering::SeqCst)
    }

    /// Waits for the next job to end and returns its id and result, in
    /// the order jobs end; `None` once the set is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// set.spawn(&pool, |_| "a").unwrap();
    /// assert_eq!(set.join_next().map(|(_, r)| r), Some(Ok("a")));
    /// assert_eq!(set.join_next(), None);
    /// ```
    pub fn join_next(&mut self) -> Option<(JobId, Result<T, JobError>)> {
        match self.next_by(None, || false) {
            Next::Job(id, r) => Some((id, r)),
            Next::Empty => None,
            Next::Timeout | Next::GaveUp => unreachable!("no deadline, never gives up"),
        }
    }

    /// [`join_next`](Self::join_next) for at most `timeout` (any
    /// `Duration`, `MAX` included).
    ///
    /// # Errors
    ///
    /// [`JoinNextError::Timeout`] if no job ended in time (the set keeps
    /// them all); [`JoinNextError::Empty`] if the set is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use threadward::JoinNextError;
    ///
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// set.spawn(&pool, |cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// assert_eq!(set.join_next_timeout(Duration::from_millis(5)).unwrap_err(), JoinNextError::Timeout);
    /// ```
    pub fn join_next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<(JobId, Result<T, JobError>), JoinNextError> {
        match self.next_by(sync::deadline_after(timeout), || false) {
            Next::Job(id, r) => Ok((id, r)),
            Next::Empty => Err(JoinNextError::Empty),
            Next::Timeout | Next::GaveUp => Err(JoinNextError::Timeout),
        }
    }

    /// [`join_next`](Self::join_next), ending early when the *caller's*
    /// stop is requested (`cx`: the managed thread or pool job that waits),
    /// like [`Job::join_or_stop`]. In a pool job the wait counts as
    /// blocking.
    ///
    /// # Errors
    ///
    /// [`JoinNextError::Stopped`] if the caller was stopped first (the set
    /// keeps its jobs); [`JoinNextError::Empty`] if the set is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use threadward::{JobSet, JoinNextError, Pool};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// let mut set = JobSet::new();
    /// set.spawn(&pool, |cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// let waiter = threadward::spawn("collector", move |cx| set.join_next_or_stop(cx).map(|_| ()))
    ///     .unwrap();
    /// assert_eq!(waiter.stop().unwrap(), Err(JoinNextError::Stopped));
    /// ```
    pub fn join_next_or_stop(
        &mut self,
        cx: &Context,
    ) -> Result<(JobId, Result<T, JobError>), JoinNextError> {
        let ready = self.ready.clone();
        let _wake = cx.token().on_stop(move || {
            let _ids = sync::lock(&ready.ids);
            ready.cv.notify_all();
        });
        let token = cx.token().clone();
        match cx.blocking(|| self.next_by(None, || token.stop_requested())) {
            Next::Job(id, r) => Ok((id, r)),
            Next::Empty => Err(JoinNextError::Empty),
            Next::Timeout | Next::GaveUp => Err(JoinNextError::Stopped),
        }
    }

    /// Waits for every job and returns their results in the order they
    /// ended.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// for i in 0..3 {
    ///     set.spawn(&pool, move |_| i).unwrap();
    /// }
    /// let mut all: Vec<i32> = set.join_all().into_iter().map(|(_, r)| r.unwrap()).collect();
    /// all.sort();
    /// assert_eq!(all, [0, 1, 2]);
    /// ```
    pub fn join_all(mut self) -> Vec<(JobId, Result<T, JobError>)> {
        let mut out = Vec::with_capacity(self.len());
        while let Some(r) = self.join_next() {
            out.push(r);
        }
        out
    }

    /// Cancels every job of the set not started yet and requests the stop
    /// of every running one (one cancel per job; the jobs stay in the set,
    /// to be joined: cancelled ones report [`JobError::Cancelled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let mut set = threadward::JobSet::new();
    /// for _ in 0..4 {
    ///     set.spawn(&pool, |cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// }
    /// set.cancel_all();
    /// assert_eq!(set.join_all().len(), 4);
    /// ```
    pub fn cancel_all(&self) {
        cancel_all(&self.jobs);
    }

    /// Takes the oldest ended job, waiting until `deadline` or until
    /// `give_up()` holds (checked at every wake-up of the ready queue).
    fn next_by(&mut self, deadline: Option<Instant>, give_up: impl Fn() -> bool) -> Next<T> {
        if self.jobs.is_empty() {
            return Next::Empty;
        }
        let Some(id) = self.ready.pop_wait(deadline, &give_up) else {
            return if give_up() {
                Next::GaveUp
            } else {
                Next::Timeout
            };
        };
        let job = self
            .jobs
            .remove(&id)
            .expect("an ended job of the set is in the set");
        // Its closure returned or was dropped: the result follows at once.
        Next::Job(JobId(id), job.join())
    }
}

/// Cancels every queued job first, then stops the running ones: a job
/// stopped first would free its worker for a queued job of the set not
/// cancelled yet.
fn cancel_all<T>(jobs: &HashMap<u64, Job<T>>) {
    for job in jobs.values() {
        job.cancel_queued();
    }
    for job in jobs.values() {
        job.stop_if_running();
    }
}

enum Next<T> {
    Job(JobId, Result<T, JobError>),
    Empty,
    Timeout,
    GaveUp,
}

impl<T: Send + 'static> Default for JobSet<T> {
    fn default() -> Self {
        JobSet::new()
    }
}

impl<T> Drop for JobSet<T> {
    /// Cancels every job still in the set (stops the running ones); does
    /// not wait for them.
    fn drop(&mut self) {
        cancel_all(&self.jobs);
    }
}

impl<T> fmt::Debug for JobSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSet")
            .field("len", &self.jobs.len())
            .field("finished", &sync::lock(&self.ready.ids).len())
            .field("running", &self.ready.running.load(Ordering::SeqCst))
            .finish()
    }
}

/// Why [`JobSet::join_next_timeout`] or [`JobSet::join_next_or_stop`]
/// returned no job.
///
/// # Examples
///
/// ```
/// let mut set = threadward::JobSet::<()>::new();
/// assert_eq!(
///     set.join_next_timeout(std::time::Duration::ZERO).unwrap_err(),
///     threadward::JoinNextError::Empty
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinNextError {
    /// The set holds no job.
    #[error("the job set is empty")]
    Empty,
    /// No job ended before the timeout.
    #[error("no job of the set ended in time")]
    Timeout,
    /// The caller's stop was requested first.
    #[error("the caller was stopped while waiting for the job set")]
    Stopped,
}

/// Why one item of [`Pool::map`] has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The pool refused the item's job.
    #[error("item {index}: the pool refused its job: {error}")]
    Refused {
        /// The item's position in the input.
        index: usize,
        /// Why.
        error: String,
    },
    /// The item's job panicked, was cancelled or shut down.
    #[error("item {index}: {error}")]
    Job {
        /// The item's position in the input.
        index: usize,
        /// What happened to its job.
        error: JobError,
    },
}

impl Pool {
    /// Runs `f` on every item of `items`, at most `window` jobs in flight
    /// at once (the rest are not submitted yet, so a million items do not
    /// sit in the queue), and returns every result in input order: a
    /// panic, a cancellation or a refusal is that item's error, with its
    /// index. `window` 0 means 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let lens = pool.map(["a", "bb", "ccc"], 2, |s, _| s.len());
    /// let lens: Vec<usize> = lens.into_iter().map(Result::unwrap).collect();
    /// assert_eq!(lens, [1, 2, 3]);
    /// ```
    pub fn map<I, F, T>(&self, items: I, window: usize, f: F) -> Vec<Result<T, MapError>>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item, &Context) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let window = window.max(1);
        let mut set: JobSet<T> = JobSet::new();
        let mut index_of: HashMap<JobId, usize> = HashMap::new();
        let mut out: Vec<Option<Result<T, MapError>>> = Vec::new();
        fn take<T: Send + 'static>(
            set: &mut JobSet<T>,
            index_of: &mut HashMap<JobId, usize>,
            out: &mut [Option<Result<T, MapError>>],
        ) {
            if let Some((id, r)) = set.join_next() {
                let index = index_of
                    .remove(&id)
                    .expect("a job of the batch has an index");
                out[index] = Some(r.map_err(|error| MapError::Job { index, error }));
            }
        }
        for (index, item) in items.into_iter().enumerate() {
            out.push(None);
            if set.len() >= window {
                take(&mut set, &mut index_of, &mut out);
            }
            let f = f.clone();
            match set.spawn(self, move |cx| f(item, cx)) {
                Ok(id) => {
                    index_of.insert(id, index);
                }
                Err(e) => {
                    out[index] = Some(Err(MapError::Refused {
                        index,
                        error: e.to_string(),
                    }));
                }
            }
        }
        while !set.is_empty() {
            take(&mut set, &mut index_of, &mut out);
        }
        out.into_iter()
            .map(|r| r.expect("every item has a result"))
            .collect()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::thread;

    /// `join_next` racing a job's end: the waiter either finds the id
    /// queued or is woken by the push; a lost wake-up deadlocks the model.
    /// Two jobs end on two threads while the set waits for both.
    #[test]
    fn loom_join_next_vs_completion_never_loses_an_end() {
        loom::model(|| {
            let ready = crate::sync::Arc::new(Ready::new());
            let ends: Vec<_> = [1u64, 2]
                .into_iter()
                .map(|id| {
                    let r = ready.clone();
                    thread::spawn(move || r.push(id))
                })
                .collect();
            let mut got = vec![
                ready.pop_wait(None, || false).expect("no deadline"),
                ready.pop_wait(None, || false).expect("no deadline"),
            ];
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
            for e in ends {
                e.join().unwrap();
            }
        });
    }

    /// A waiter that gives up (its caller's stop) racing an end: it
    /// returns either the id or nothing, never hangs, and an id it did not
    /// take stays queued.
    #[test]
    fn loom_join_next_or_stop_vs_completion() {
        loom::model(|| {
            let ready = crate::sync::Arc::new(Ready::new());
            let stop = crate::sync::Arc::new(crate::sync::AtomicBool::new(false));
            let r = ready.clone();
            let end = thread::spawn(move || r.push(7));
            let (r, s) = (ready.clone(), stop.clone());
            let stopper = thread::spawn(move || {
                s.store(true, std::sync::atomic::Ordering::SeqCst);
                // As the stop callback does: wake the waiters under the lock.
                let _ids = sync::lock(&r.ids);
                r.cv.notify_all();
            });
            let got = ready.pop_wait(None, || stop.load(std::sync::atomic::Ordering::SeqCst));
            end.join().unwrap();
            stopper.join().unwrap();
            let left = sync::lock(&ready.ids).len();
            assert_eq!(
                usize::from(got.is_some()) + left,
                1,
                "the end is taken or kept"
            );
        });
    }
}
