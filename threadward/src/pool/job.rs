//! Jobs: the submitter's [`Job`] handle and the queued task behind it.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::core::{Core, JobHint, Outcome, QueueMark, QueuedJob, Report};
use crate::record::ThreadRecord;
use crate::stop::{HasStop, LazyStop};
use crate::sync::panic_message;
use crate::sync::{self, Condvar, Mutex, MutexGuard};
use crate::thread::{BlockHook, Context};

/// Identity of a pool job, unique per process.
///
/// # Examples
///
/// ```
/// let pool = threadward::Pool::builder().build().unwrap();
/// let a = pool.spawn(|_| ()).unwrap();
/// let b = pool.spawn(|_| ()).unwrap();
/// assert_ne!(a.id(), b.id());
/// println!("{}", a.id()); // "J1"-style
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub(crate) u64);

impl JobId {
    /// The numeric id (as shown in registry snapshots).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// assert!(pool.spawn(|_| ()).unwrap().id().as_u64() > 0);
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "J{}", self.0)
    }
}

/// Why a job produced no value.
///
/// # Examples
///
/// ```
/// use threadward::{JobError, Pool};
///
/// let pool = Pool::builder().build().unwrap();
/// let job = pool.spawn(|_| -> u8 { panic!("bad input") }).unwrap();
/// assert!(matches!(job.join(), Err(JobError::Panicked { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked (the pool and its worker carry on).
    #[error("job panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// [`Job::cancel`] ran before the job started; it never ran.
    #[error("job was cancelled before it started")]
    Cancelled,
    /// The job was still queued when the pool shut down; it never ran.
    #[error("job was still queued when the pool shut down")]
    ShutDown,
    /// A job tried to join or stop itself.
    #[error("a job cannot join or stop itself")]
    SelfJoin,
}

enum Phase<T> {
    Queued,
    Running(std::thread::ThreadId),
    /// The error boxed: a job cell under 128 bytes stays in malloc's
    /// fastest bins (`JobError` holds a `String`).
    Done(Result<T, Box<JobError>>),
    Taken,
}

struct Slot<T> {
    phase: Phase<T>,
    waker: Option<Waker>,
    /// The (single) `Job` handle is blocked on `cv`: notify only then.
    joining: bool,
}

/// Shared between the [`Job`] handle and the worker that runs the job.
pub(crate) struct JobInner<T> {
    id: u64,
    hint: JobHint,
    /// Made on first use: by the job's `Context`, a stop of the job, or a
    /// shutdown that finds it running.
    stop: LazyStop,
    /// Kept by the pool's queue: a cancel finds the job there in O(1).
    queued: QueueMark,
    slot: Mutex<Slot<T>>,
    cv: Condvar,
}

/// A job's one allocation: its shared state and, in `f`, its closure. The
/// queue holds it as a [`Task`]; the [`Job`] handle as
/// `JobCell<T, dyn Closure>`, which hides the closure's type.
pub(crate) struct JobCell<T, F: ?Sized> {
    inner: JobInner<T>,
    f: F,
}

/// The closure's place in a [`JobCell`], its type hidden: whoever runs,
/// aborts or cancels the job takes the closure out (exactly one does).
pub(crate) trait Closure: Send + Sync {
    /// Drops the closure if it is still there, contained (user code).
    fn discard(&self);
}

/// A job's closure, and how its kind (learned hints, README.md) is told:
/// by the closure's type ([`ByType`], zero-sized) or by a key its
/// submitter named ([`Named`], `Pool::spawn_kind`).
pub(crate) struct Place<K, F> {
    kind: K,
    f: std::sync::Mutex<Option<F>>,
}

/// The job's kind is its closure's type.
pub(crate) struct ByType;

/// The job's kind is a key its submitter named (one closure type may
/// wrap both a quick and a blocking path).
pub(crate) struct Named(pub(crate) u64);

/// How a job's kind is told.
pub(crate) trait KindOf: Send + Sync + 'static {
    /// The kind of a job whose closure is an `F`.
    fn kind<F: 'static>(&self) -> u64;
    /// Its name in the snapshot.
    fn name<F: 'static>(&self) -> &'static str;
}

impl KindOf for ByType {
    fn kind<F: 'static>(&self) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        // TypeId hashes itself as one or two integers: a multiply each.
        BuildHasherDefault::<super::core::KindHasher>::default()
            .hash_one(std::any::TypeId::of::<F>())
    }
    fn name<F: 'static>(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

impl KindOf for Named {
    fn kind<F: 'static>(&self) -> u64 {
        self.0
    }
    fn name<F: 'static>(&self) -> &'static str {
        "named"
    }
}

impl<K: KindOf, F: Send> Closure for Place<K, F> {
    fn discard(&self) {
        let f = take_closure(&self.f);
        sync::contain("the drop of a job's closure", move || drop(f));
    }
}

/// Takes the closure out of its place (a poisoned lock cannot happen: no
/// user code runs under it).
fn take_closure<F>(f: &std::sync::Mutex<Option<F>>) -> Option<F> {
    f.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

impl<T: Send + 'static, F: FnOnce(&Context) -> T + Send + 'static> JobCell<T, Place<ByType, F>> {
    /// A job `id` with hint `hint` and stop state `stop`, in its cell: the
    /// queue holds it as a [`Task`], a handle as a `JobCell<T, dyn Closure>`.
    pub(crate) fn new(id: u64, hint: JobHint, stop: LazyStop, f: F) -> Arc<Self> {
        JobCell::with_kind(id, hint, stop, ByType, f)
    }
}

impl<T: Send + 'static, K: KindOf, F: FnOnce(&Context) -> T + Send + 'static>
    JobCell<T, Place<K, F>>
{
    /// [`JobCell::new`] with its kind told by `kind`.
    pub(crate) fn with_kind(id: u64, hint: JobHint, stop: LazyStop, kind: K, f: F) -> Arc<Self> {
        Arc::new(JobCell {
            inner: JobInner::new(id, hint, stop),
            f: Place {
                kind,
                f: std::sync::Mutex::new(Some(f)),
            },
        })
    }
}

impl<T, F: ?Sized + Send + Sync> HasStop for JobCell<T, F>
where
    T: Send,
{
    fn stop(&self) -> &LazyStop {
        &self.inner.stop
    }
}

impl<T> JobInner<T> {
    fn new(id: u64, hint: JobHint, stop: LazyStop) -> JobInner<T> {
        JobInner {
            id,
            hint,
            stop,
            queued: QueueMark::default(),
            slot: Mutex::new(Slot {
                phase: Phase::Queued,
                waker: None,
                joining: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        sync::lock(&self.slot)
    }

    /// Finishes the job with `out`: from any unfinished phase, or with
    /// `only_queued` only if it has not started. Returns whether it did.
    fn complete(&self, out: Result<T, JobError>, only_queued: bool) -> bool {
        match self.settle(out, only_queued) {
            Some(wake) => {
                self.wake(wake);
                true
            }
            None => false,
        }
    }

    /// The first half of `complete`: stores the result and returns whom to
    /// wake, without waking anyone (a worker calls it under the pool lock,
    /// so the pool's counts and the job's result change together).
    fn settle(&self, out: Result<T, JobError>, only_queued: bool) -> Option<Wake> {
        let mut s = self.lock();
        let allowed = match s.phase {
            Phase::Queued => true,
            Phase::Running(_) => !only_queued,
            Phase::Done(_) | Phase::Taken => false,
        };
        if !allowed {
            return None;
        }
        s.phase = Phase::Done(out.map_err(Box::new));
        Some(Wake {
            joiner: s.joining,
            waker: s.waker.take(),
        })
    }

    /// The second half of `complete`, outside every lock.
    fn wake(&self, wake: Wake) {
        if wake.joiner {
            self.cv.notify_all();
        }
        if let Some(w) = wake.waker {
            // User code, often on a worker: contained.
            sync::contain("a job's waker", move || w.wake());
        }
    }

    /// Marks a queued job running on this thread; `false` if it was
    /// cancelled (or shut down) after the worker took it.
    fn start(&self) -> bool {
        let mut s = self.lock();
        if !matches!(s.phase, Phase::Queued) {
            return false;
        }
        s.phase = Phase::Running(std::thread::current().id());
        true
    }
}

/// Whom a finished job wakes.
struct Wake {
    /// The `Job` handle blocks in `join`.
    joiner: bool,
    /// The `Job` future's waker.
    waker: Option<Waker>,
}

/// A queued job, its types hidden: what the pool's queue holds.
pub(crate) trait Runnable: Send + Sync {
    fn id(&self) -> u64;
    fn hint(&self) -> JobHint;
    fn mark(&self) -> &QueueMark;
    /// The job's kind for learned hints: its closure's type.
    fn kind(&self) -> u64;
    /// The kind's name for the snapshot.
    fn kind_name(&self) -> &'static str;
    /// The job's stop state, reachable without keeping the job alive (a
    /// strong reference in a worker's slot could make a detached value
    /// drop under the pool lock).
    fn stopper(self: Arc<Self>) -> Weak<dyn HasStop>;
    /// Runs the job on worker `rec`. Its outcome is counted by `report`
    /// in the same critical section that stores the result, so whoever
    /// sees the result sees the count and the other way round. Never
    /// unwinds: every piece of user code in it (the closure, its drop, the
    /// value's drop, the panic payload, the waker) is contained.
    fn run(
        self: Arc<Self>,
        rec: &Arc<ThreadRecord>,
        hook: Option<&Arc<dyn BlockHook>>,
        report: Report<'_>,
    );
    /// Resolves a job that will never run with `why`; never unwinds.
    fn abort(self: Arc<Self>, why: JobError);
}

/// A queued job: its cell, shared with the job's handle (one allocation).
pub(crate) type Task = Arc<dyn Runnable>;

impl QueuedJob for Task {
    fn id(&self) -> u64 {
        (**self).id()
    }
    fn refuse(self) {
        self.abort(JobError::ShutDown);
    }
    fn stopper(&self) -> Option<Weak<dyn HasStop>> {
        Some(self.clone().stopper())
    }
    fn hint(&self) -> JobHint {
        (**self).hint()
    }
    fn mark(&self) -> &QueueMark {
        (**self).mark()
    }
    fn kind(&self) -> Option<u64> {
        Some((**self).kind())
    }
    fn kind_name(&self) -> &'static str {
        (**self).kind_name()
    }
}

impl<K, F, T> Runnable for JobCell<T, Place<K, F>>
where
    K: KindOf,
    F: FnOnce(&Context) -> T + Send + 'static,
    T: Send + 'static,
{
    fn id(&self) -> u64 {
        self.inner.id
    }

    fn hint(&self) -> JobHint {
        self.inner.hint
    }

    fn mark(&self) -> &QueueMark {
        &self.inner.queued
    }

    fn kind(&self) -> u64 {
        self.f.kind.kind::<F>()
    }

    fn kind_name(&self) -> &'static str {
        self.f.kind.name::<F>()
    }

    fn stopper(self: Arc<Self>) -> Weak<dyn HasStop> {
        let weak: Weak<Self> = Arc::downgrade(&self);
        weak
    }

    fn run(
        self: Arc<Self>,
        rec: &Arc<ThreadRecord>,
        hook: Option<&Arc<dyn BlockHook>>,
        report: Report<'_>,
    ) {
        let job = &self.inner;
        // Only the worker that took the job from the queue runs it, so
        // after `start` the closure is there.
        let f = if job.start() {
            take_closure(&self.f.f)
        } else {
            None
        };
        let Some(f) = f else {
            // Cancelled after we took it: it never runs.
            report(Outcome::Skipped, &mut || {});
            self.f.discard();
            return;
        };
        rec.set_job(job.id);
        rec.set_running();
        let stop: Arc<dyn HasStop> = self.clone();
        let cx = Context::with_hook(rec.clone(), stop, hook.cloned());
        let out = catch_unwind(AssertUnwindSafe(move || f(&cx)));
        rec.set_job(0);
        let out = out.map_err(|payload| {
            let message = panic_message(&*payload);
            tracing::warn!(worker = %rec.name, job = job.id, %message, "pool job panicked");
            sync::drop_payload(payload);
            JobError::Panicked { message }
        });
        let outcome = if out.is_ok() {
            Outcome::Completed
        } else {
            Outcome::Panicked
        };
        let mut out = Some(out);
        let mut wake = None;
        // From here to the end the job's user code (its waker, a detached
        // value's drop) may still run on this worker, which may meanwhile
        // hold its next job: the worker stays named by this one too.
        let id = job.id;
        rec.set_finishing(id);
        report(outcome, &mut || {
            wake = out.take().and_then(|o| job.settle(o, false));
        });
        if let Some(w) = wake {
            job.wake(w);
        }
        // The last reference of a detached job drops its value here.
        sync::contain("the drop of a detached job's value", move || drop(self));
        rec.set_finishing(0);
    }

    fn abort(self: Arc<Self>, why: JobError) {
        // Drop the closure (and what it captured) before waking the joiner.
        self.f.discard();
        self.inner.complete(Err(why), true);
        sync::contain("the drop of a job that never ran", move || drop(self));
    }
}

/// Handle to a job submitted with [`Pool::spawn`](crate::Pool::spawn).
///
/// Dropping it detaches the job (it still runs). It is also a [`Future`],
/// so async code can `.await` the result without a runtime dependency.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let pool = threadward::Pool::builder().name("jobs").build().unwrap();
/// let (started, rx) = crossbeam_channel::bounded(1);
/// let job = pool
///     .spawn(move |cx| {
///         started.send(()).unwrap();
///         let mut n = 0;
///         while cx.sleep(Duration::from_millis(1)).is_ok() {
///             n += 1;
///         }
///         n
///     })
///     .unwrap();
/// rx.recv().unwrap();
/// let n: u32 = job.stop().unwrap(); // a stopped job's value is real
/// # let _ = n;
/// ```
pub struct Job<T> {
    cell: Arc<JobCell<T, dyn Closure>>,
    core: Weak<Core<Task>>,
}

impl<T> Job<T> {
    pub(crate) fn new(cell: Arc<JobCell<T, dyn Closure>>, core: Weak<Core<Task>>) -> Job<T> {
        Job { cell, core }
    }

    fn inner(&self) -> &JobInner<T> {
        &self.cell.inner
    }

    /// The job's id.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let job = pool.spawn(|_| ()).unwrap();
    /// let _id = job.id();
    /// ```
    pub fn id(&self) -> JobId {
        JobId(self.inner().id)
    }

    /// Cancels the job: if it has not started it never will (and `join`
    /// returns [`JobError::Cancelled`]); if it is running its stop is
    /// requested. Returns `true` only when this call kept it from running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use threadward::{JobError, Pool};
    ///
    /// let pool = Pool::builder().max_threads(1).build().unwrap();
    /// let first = pool.spawn(|cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// let second = pool.spawn(|_| unreachable!("cancelled")).unwrap();
    /// # let deadline = std::time::Instant::now() + Duration::from_secs(10);
    /// # while pool.stats().busy == 0 { assert!(std::time::Instant::now() < deadline); std::thread::yield_now(); }
    /// assert!(second.cancel());
    /// assert_eq!(second.join(), Err(JobError::Cancelled));
    /// assert!(!first.cancel()); // running: its stop is requested instead
    /// assert!(first.join().unwrap().is_err());
    /// ```
    pub fn cancel(&self) -> bool {
        let kept_from_running = self.cancel_queued();
        if !kept_from_running && self.inner().stop.source().request_stop() {
            tracing::debug!(job = self.inner().id, "stop of a running job requested");
        }
        kept_from_running
    }

    /// The first half of [`cancel`](Job::cancel): keeps the job from
    /// running if it has not started; whether it did.
    pub(crate) fn cancel_queued(&self) -> bool {
        let kept_from_running = self.inner().complete(Err(JobError::Cancelled), true);
        if kept_from_running {
            // What the closure holds goes now, not with the last handle.
            self.cell.f.discard();
            if let Some(core) = self.core.upgrade() {
                core.remove_queued(&self.inner().queued);
            }
        }
        kept_from_running
    }

    /// Requests the stop of the job if it is running (makes no stop state
    /// for a job that ended).
    pub(crate) fn stop_if_running(&self) {
        let running = matches!(self.inner().lock().phase, Phase::Running(_));
        if running {
            self.inner().stop.source().request_stop();
        }
    }

    /// Whether the job has finished (ran, panicked, or was cancelled or
    /// shut down).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let job = pool.spawn(|_| ()).unwrap();
    /// pool.wait_idle();
    /// assert!(job.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        matches!(self.inner().lock().phase, Phase::Done(_) | Phase::Taken)
    }

    fn is_self(&self, phase: &Phase<T>) -> bool {
        matches!(phase, Phase::Running(t) if *t == std::thread::current().id())
    }

    /// Waits for the job's result.
    ///
    /// # Errors
    ///
    /// [`JobError`]: panicked, cancelled, shut down, or joining itself.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// assert_eq!(pool.spawn(|_| 6 * 7).unwrap().join(), Ok(42));
    /// ```
    pub fn join(self) -> Result<T, JobError> {
        match self.wait(None) {
            Ok(r) => r,
            Err(_) => unreachable!("no deadline"),
        }
    }

    /// Waits up to `timeout` (any `Duration`, `MAX` included) for the
    /// job's result.
    ///
    /// # Errors
    ///
    /// `Err(self)` gives the handle back if the job has not finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let job = pool.spawn(|cx| cx.sleep(Duration::from_secs(60))).unwrap();
    /// let job = job.join_timeout(Duration::from_millis(5)).unwrap_err();
    /// job.cancel();
    /// assert!(job.join_timeout(Duration::from_secs(10)).is_ok());
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JobError>, Job<T>> {
        self.wait(sync::deadline_after(timeout))
    }

    fn wait(self, deadline: Option<Instant>) -> Result<Result<T, JobError>, Job<T>> {
        self.wait_or(deadline, || false)
    }

    /// Waits for the result until `deadline`, or until `give_up()` holds
    /// (checked at every wake-up of the job's condvar); `Err(self)` then.
    fn wait_or(
        self,
        deadline: Option<Instant>,
        give_up: impl Fn() -> bool,
    ) -> Result<Result<T, JobError>, Job<T>> {
        let mut s = self.inner().lock();
        if self.is_self(&s.phase) {
            return Ok(Err(JobError::SelfJoin));
        }
        s.joining = true;
        let (mut s, _) = sync::wait_until(&self.inner().slot, &self.inner().cv, s, deadline, |s| {
            matches!(s.phase, Phase::Done(_)) || give_up()
        });
        s.joining = false;
        if !matches!(s.phase, Phase::Done(_)) {
            drop(s);
            return Err(self);
        }
        match std::mem::replace(&mut s.phase, Phase::Taken) {
            Phase::Done(r) => Ok(r.map_err(|e| *e)),
            _ => unreachable!("checked above"),
        }
    }

    /// Waits for the job's result like [`join`](Job::join), or until the
    /// *caller's* stop (`cx`: the managed thread or pool job that waits) is
    /// requested: a service thread waiting on a job never outlives its own
    /// stop. In a pool job the wait counts as blocking (the pool runs
    /// another job meanwhile).
    ///
    /// # Errors
    ///
    /// `Err(self)` gives the handle back if the caller was stopped first
    /// (the job is untouched: cancel, join or drop it).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let slow = pool.spawn(|cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// let waiter = threadward::spawn("waiter", move |cx| match slow.join_or_stop(cx) {
    ///     Ok(_) => "finished",
    ///     Err(job) => {
    ///         job.cancel();
    ///         "stopped while waiting"
    ///     }
    /// })
    /// .unwrap();
    /// assert_eq!(waiter.stop().unwrap(), "stopped while waiting");
    /// ```
    pub fn join_or_stop(self, cx: &crate::thread::Context) -> Result<Result<T, JobError>, Job<T>>
    where
        T: Send + 'static,
    {
        let cell = self.cell.clone();
        let _wake = cx.token().on_stop(move || {
            let _s = cell.inner.lock();
            cell.inner.cv.notify_all();
        });
        let token = cx.token().clone();
        cx.blocking(|| self.wait_or(None, || token.stop_requested()))
    }

    /// A guard that cancels the job (or requests its stop, if running)
    /// when dropped, where a plain `Job` detaches: for work that must not
    /// go on after its caller's scope (an early return or a panic
    /// included). The drop does not wait: a running job ends at its next
    /// stop-aware wait or `should_stop` check. Once awaited to completion
    /// the guard is spent (joining it then panics).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let job = pool.spawn(|cx| cx.sleep(std::time::Duration::from_secs(60))).unwrap();
    /// let id = job.id();
    /// {
    ///     let _guard = job.cancel_on_drop();
    ///     // ... an early return here ...
    /// } // cancelled or stopped here
    /// pool.wait_idle();
    /// assert_eq!(pool.stats().busy, 0);
    /// # let _ = id;
    /// ```
    pub fn cancel_on_drop(self) -> JobGuard<T> {
        JobGuard { job: Some(self) }
    }

    /// Cancels (not started) or stops (running) the job and waits for it.
    ///
    /// # Errors
    ///
    /// As [`join`](Job::join); a job that returns after its stop yields
    /// `Ok(value)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let (started, rx) = crossbeam_channel::bounded(1);
    /// let job = pool
    ///     .spawn(move |cx| {
    ///         started.send(()).unwrap();
    ///         cx.sleep(std::time::Duration::from_secs(3600))
    ///     })
    ///     .unwrap();
    /// rx.recv().unwrap(); // running now, so stop() stops it rather than cancelling
    /// assert_eq!(job.stop(), Ok(Err(threadward::Stopped)));
    /// ```
    pub fn stop(self) -> Result<T, JobError> {
        {
            let s = self.inner().lock();
            if self.is_self(&s.phase) {
                drop(s);
                self.inner().stop.source().request_stop();
                return Err(JobError::SelfJoin);
            }
        }
        self.cancel();
        self.join()
    }
}

impl<T> Future for Job<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut s = self.inner().lock();
        match std::mem::replace(&mut s.phase, Phase::Taken) {
            Phase::Done(r) => Poll::Ready(r.map_err(|e| *e)),
            Phase::Taken => panic!("Job polled after it returned Ready"),
            other => {
                s.phase = other;
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Job<T> {
    /// Detaches the job. If its result is already there, it is dropped
    /// here, contained: a value that panics on drop does not unwind out of
    /// a handle's drop.
    fn drop(&mut self) {
        let done = {
            let mut s = self.inner().lock();
            match std::mem::replace(&mut s.phase, Phase::Taken) {
                Phase::Done(r) => Some(r),
                other => {
                    s.phase = other;
                    None
                }
            }
        };
        if let Some(r) = done {
            sync::contain("the drop of a job's result", move || drop(r));
        }
    }
}

/// A [`Job`] that is cancelled (or stopped) when the guard drops; made by
/// [`Job::cancel_on_drop`]. It is a future of the job's result too.
#[must_use = "dropping the guard cancels the job at once"]
pub struct JobGuard<T> {
    job: Option<Job<T>>,
}

impl<T> JobGuard<T> {
    fn job(&self) -> &Job<T> {
        self.job
            .as_ref()
            .expect("only taken by value-consuming methods")
    }

    /// The job's id.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let g = pool.spawn(|_| ()).unwrap().cancel_on_drop();
    /// let _ = g.id();
    /// ```
    pub fn id(&self) -> JobId {
        self.job().id()
    }

    /// Waits for the result (the guard is spent: nothing left to cancel).
    ///
    /// # Errors
    ///
    /// As [`Job::join`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// assert_eq!(pool.spawn(|_| 7).unwrap().cancel_on_drop().join(), Ok(7));
    /// ```
    pub fn join(mut self) -> Result<T, JobError> {
        self.job.take().expect("not taken yet").join()
    }

    /// The plain handle back: dropping it then detaches, as a `Job` does.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = threadward::Pool::builder().build().unwrap();
    /// let job = pool.spawn(|_| 1).unwrap().cancel_on_drop().into_job();
    /// assert_eq!(job.join(), Ok(1));
    /// ```
    pub fn into_job(mut self) -> Job<T> {
        self.job.take().expect("not taken yet")
    }
}

impl<T> Drop for JobGuard<T> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            job.cancel();
        }
    }
}

impl<T> Future for JobGuard<T> {
    type Output = Result<T, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let job = self.job.as_mut().expect("polled after it returned Ready");
        let out = Pin::new(job).poll(cx);
        if out.is_ready() {
            self.job = None; // spent: nothing left to cancel on drop
        }
        out
    }
}

impl<T> fmt::Debug for JobGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.job {
            Some(j) => f.debug_tuple("JobGuard").field(j).finish(),
            None => f.write_str("JobGuard(spent)"),
        }
    }
}

impl<T> fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.inner().id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::thread;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// `cancel` racing a worker's start: exactly one wins; the job either
    /// never runs and reports `Cancelled`, or runs and reports its value.
    #[test]
    fn loom_cancel_vs_run() {
        loom::model(|| {
            let (_task, cell) = test_cell(1);
            let j = cell.clone();
            let worker = thread::spawn(move || {
                if !j.inner.start() {
                    return false;
                }
                if let Some(w) = j.inner.settle(Ok(5), false) {
                    j.inner.wake(w);
                }
                true
            });
            let cancelled = cell.inner.complete(Err(JobError::Cancelled), true);
            let ran = worker.join().unwrap();
            assert!(cancelled ^ ran, "cancelled {cancelled}, ran {ran}");
            let s = cell.inner.lock();
            match &s.phase {
                Phase::Done(Ok(5)) => assert!(ran),
                Phase::Done(Err(e)) if **e == JobError::Cancelled => assert!(cancelled),
                _ => panic!("unresolved"),
            }
        });
    }

    /// Counts its drops: a job set's notice, in the models.
    struct Notice(std::sync::Arc<AtomicUsize>);

    impl Drop for Notice {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A job set's cancel-on-drop racing the job's start (`Job::cancel`
    /// against the worker's `run`, on the shipped cell): the closure's
    /// captures (a set's notice) are dropped exactly once, on whichever
    /// side won, and the job resolves exactly once.
    #[test]
    fn loom_cancel_on_drop_vs_start_drops_the_notice_once() {
        loom::model(|| {
            let drops = std::sync::Arc::new(AtomicUsize::new(0));
            let notice = Notice(drops.clone());
            let cell = JobCell::new(3, JobHint::Auto, LazyStop::default(), move |_: &Context| {
                let _n = notice;
                9u32
            });
            let c = cell.clone();
            let worker = thread::spawn(move || {
                if !c.inner.start() {
                    c.f.discard();
                    return false;
                }
                // The closure runs (its notice drops at its end).
                let f = take_closure(&c.f.f).expect("taken once");
                drop(f);
                if let Some(w) = c.inner.settle(Ok(9), false) {
                    c.inner.wake(w);
                }
                true
            });
            let cancelled = cell.inner.complete(Err(JobError::Cancelled), true);
            if cancelled {
                cell.f.discard();
            }
            let ran = worker.join().unwrap();
            assert!(cancelled ^ ran);
            assert_eq!(drops.load(Ordering::SeqCst), 1, "the notice dropped once");
            assert!(matches!(cell.inner.lock().phase, Phase::Done(_)));
        });
    }

    /// A job cell as `Pool::spawn` makes it (its closure never runs).
    fn test_cell(id: u64) -> (Task, Arc<JobCell<u32, dyn Closure>>) {
        let cell = JobCell::new(id, JobHint::Auto, LazyStop::default(), |_: &Context| 0u32);
        (cell.clone(), cell)
    }

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The waker hand-off: a poll racing the job's completion either sees
    /// the result, or leaves a waker that the completion wakes. A lost
    /// wake-up (Pending and never woken) fails the model.
    #[test]
    fn loom_poll_vs_completion_never_loses_the_wakeup() {
        loom::model(|| {
            let (_task, cell) = test_cell(2);
            let mut job = Job::new(cell.clone(), Weak::new());
            assert!(cell.inner.start());
            let i = cell.clone();
            let worker = thread::spawn(move || {
                if let Some(w) = i.inner.settle(Ok(7), false) {
                    i.inner.wake(w);
                }
            });
            let count = std::sync::Arc::new(Count(AtomicUsize::new(0)));
            let waker = Waker::from(count.clone());
            let mut cx = std::task::Context::from_waker(&waker);
            let first = Pin::new(&mut job).poll(&mut cx);
            worker.join().unwrap();
            match first {
                Poll::Ready(r) => assert_eq!(r, Ok(7)),
                Poll::Pending => {
                    assert_eq!(count.0.load(Ordering::SeqCst), 1, "lost wake-up");
                    assert_eq!(Pin::new(&mut job).poll(&mut cx), Poll::Ready(Ok(7)));
                }
            }
        });
    }
}
