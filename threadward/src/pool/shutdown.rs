//! Whole-pool shutdown with a deadline (README.md: "Shutdown").

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::JobError;
use super::{JobId, Pool};
use crate::record::{ThreadId, ThreadState};
use crate::sync;

/// A worker that did not exit before a shutdown's deadline. It is detached
/// and stays visible in [`registry::snapshot`](crate::registry::snapshot).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Straggler {
    /// The worker's id.
    pub id: ThreadId,
    /// The worker's name.
    pub name: Arc<str>,
    /// The job it runs, if any.
    pub job: Option<JobId>,
    /// How long that job has run.
    pub job_age: Option<Duration>,
    /// A job that returned but whose user code (its waker, the drop of a
    /// detached job's value) still runs on this worker; the same as `job`
    /// when the worker has not taken another.
    pub finishing_job: Option<JobId>,
    /// What it was doing at the deadline, e.g. waiting in which wait.
    pub state: ThreadState,
}

impl fmt::Display for Straggler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} ({})", self.id, self.name, self.state)?;
        match (self.job, self.job_age) {
            (Some(job), Some(age)) if self.finishing_job == Some(job) => write!(
                f,
                " finishing {job} (started {age:.1?} ago: its waker or value drop)"
            )?,
            (Some(job), Some(age)) => write!(f, " running {job} for {age:.1?}")?,
            _ => {}
        }
        if let Some(prev) = self.finishing_job.filter(|p| Some(*p) != self.job) {
            write!(f, ", still finishing {prev}")?;
        }
        Ok(())
    }
}

/// What [`Pool::shutdown`] or [`Pool::close`] did.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let pool = threadward::Pool::builder().build().unwrap();
/// pool.spawn(|cx| cx.sleep(Duration::from_secs(3600))).unwrap();
/// let report = pool.shutdown(Duration::from_secs(5));
/// assert!(report.stragglers.is_empty());
/// println!("{report}");
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Workers still running a job at the deadline (idle workers never
    /// are: they run no user code and exit on their own).
    pub stragglers: Vec<Straggler>,
    /// Queued jobs this call dropped; they never ran (they report
    /// [`JobError::ShutDown`]).
    pub cancelled_queued: usize,
    /// Running jobs whose stop this call requested (a second shutdown
    /// counts none again).
    pub stopped_running: usize,
    /// How long the call took.
    pub elapsed: Duration,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown in {:.1?}: {} queued job(s) dropped, {} running job(s) stopped, {} straggler(s)",
            self.elapsed,
            self.cancelled_queued,
            self.stopped_running,
            self.stragglers.len()
        )?;
        for s in &self.stragglers {
            write!(f, "\n  straggler {s}")?;
        }
        Ok(())
    }
}

impl Pool {
    /// Shuts the pool down within `deadline`: refuses new jobs, drops
    /// queued ones (they report [`JobError::ShutDown`]), requests the stop
    /// of every running job, and waits for all workers in parallel.
    ///
    /// Workers still running a job at the deadline are reported as
    /// stragglers and detached. The call returns by the deadline (plus a
    /// few microseconds of bookkeeping) whatever jobs and their stop
    /// callbacks do: stop requests run on a helper thread, so a callback
    /// that blocks delays only that helper. Any `Duration` is accepted
    /// (`MAX`: wait for ever). Idempotent: a later call waits again and
    /// reports whoever is still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use threadward::{JobError, Pool, SpawnError};
    ///
    /// let pool = Pool::builder().max_threads(1).build().unwrap();
    /// let (started, rx) = crossbeam_channel::bounded(1);
    /// let running = pool
    ///     .spawn(move |cx| {
    ///         started.send(()).unwrap();
    ///         cx.sleep(Duration::from_secs(3600))
    ///     })
    ///     .unwrap();
    /// rx.recv().unwrap();
    /// let queued = pool.spawn(|_| ()).unwrap();
    /// let report = pool.shutdown(Duration::from_secs(5));
    /// assert!(report.stragglers.is_empty());
    /// assert_eq!(running.join(), Ok(Err(threadward::Stopped)));
    /// assert_eq!(queued.join(), Err(JobError::ShutDown));
    /// assert!(matches!(pool.spawn(|_| ()), Err(SpawnError::ShutDown)));
    /// ```
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let start = Instant::now();
        self.shutdown_by(start, sync::deadline_after(deadline))
    }

    fn shutdown_by(&self, start: Instant, end: Option<Instant>) -> ShutdownReport {
        let core = self.core();
        let (jobs, stops) = core.begin_shutdown();
        // Stops first (a running job's stop callbacks are user code; they
        // run on a helper thread when there is a deadline), then the
        // queued jobs, whose closures' drops are contained.
        let stopped_running = crate::thread::request_stops_by(stops, end);
        let cancelled_queued = jobs.len();
        for job in jobs {
            job.abort(JobError::ShutDown);
        }
        self.finish(end, start, cancelled_queued, stopped_running)
    }

    /// Closes the pool gracefully within `deadline`: refuses new jobs but
    /// runs the queued ones; at the deadline, whatever is left is shut down
    /// as by [`shutdown`](Pool::shutdown) and reported.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let pool = threadward::Pool::builder().max_threads(2).build().unwrap();
    /// let ran = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..10 {
    ///     let r = ran.clone();
    ///     pool.spawn(move |_| r.fetch_add(1, Ordering::SeqCst)).unwrap();
    /// }
    /// let report = pool.close(Duration::from_secs(10));
    /// assert!(report.stragglers.is_empty());
    /// assert_eq!(ran.load(Ordering::SeqCst), 10);
    /// ```
    pub fn close(&self, deadline: Duration) -> ShutdownReport {
        let start = Instant::now();
        let end = sync::deadline_after(deadline);
        let core = self.core();
        core.begin_close();
        core.wait_members(end, self.own_worker());
        self.shutdown_by(start, end)
    }

    fn finish(
        &self,
        end: Option<Instant>,
        start: Instant,
        cancelled_queued: usize,
        stopped_running: usize,
    ) -> ShutdownReport {
        let core = self.core();
        // A job that shuts down its own pool waits for every worker but its
        // own (its wait counts as blocking).
        core.wait_members(end, self.own_worker());
        core.settle_exits(end);
        let now = Instant::now();
        let mut stragglers = Vec::new();
        for w in core.detach_all() {
            if w.rec.finished.is_set() {
                continue;
            }
            let (mut state, _) = w.rec.state();
            let (job, job_age) = match (&w.current, &w.finishing) {
                (Some((job, started, stop_requested)), _) => {
                    if state == ThreadState::Running && *stop_requested {
                        state = ThreadState::Stopping; // a worker follows its job
                    }
                    (Some(JobId(*job)), Some(now - *started))
                }
                (None, Some(f)) => (Some(JobId(f.job)), Some(now - f.started)),
                (None, None) => (None, None),
            };
            stragglers.push(Straggler {
                id: w.rec.id,
                name: w.rec.name.clone(),
                job,
                job_age,
                finishing_job: w.finishing.map(|f| JobId(f.job)),
                state,
            });
        }
        for s in &stragglers {
            tracing::warn!(pool = %self.name(), straggler = %s, "pool worker did not stop before the deadline");
        }
        ShutdownReport {
            stragglers,
            cancelled_queued,
            stopped_running,
            elapsed: start.elapsed(),
        }
    }
}
