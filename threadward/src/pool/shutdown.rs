//! Whole-pool shutdown with a deadline (README.md: "Shutdown").

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::JobError;
use super::{JobId, Pool};
use crate::registry::{ThreadId, ThreadState};

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
    /// What it was doing at the deadline, e.g. waiting in which wait.
    pub state: ThreadState,
}

impl fmt::Display for Straggler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} ({})", self.id, self.name, self.state)?;
        if let (Some(job), Some(age)) = (self.job, self.job_age) {
            write!(f, " running {job} for {age:.1?}")?;
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
    /// Workers still running at the deadline.
    pub stragglers: Vec<Straggler>,
    /// Queued jobs that never ran (they report [`JobError::ShutDown`]).
    pub cancelled_queued: usize,
    /// Running jobs whose stop was requested.
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
    /// Workers still running at the deadline are reported as stragglers
    /// and detached; this never waits past the deadline (plus the few
    /// microseconds of bookkeeping). Idempotent: a later call waits again
    /// and reports whoever is still running.
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
        let end = start.checked_add(deadline);
        let core = &self.shared.core;
        let (jobs, stops) = core.begin_shutdown();
        let cancelled_queued = jobs.len();
        for job in jobs {
            job.abort(JobError::ShutDown);
        }
        for s in &stops {
            s.request_stop();
        }
        self.finish(end, start, cancelled_queued, stops.len())
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
        let end = start.checked_add(deadline);
        let core = &self.shared.core;
        core.begin_close();
        let inside = usize::from(self.on_own_worker());
        core.wait_until(end, |st| st.threads <= inside);
        let mut report = self.shutdown(end.map_or(Duration::MAX, |e| {
            e.saturating_duration_since(Instant::now())
        }));
        report.elapsed = start.elapsed();
        report
    }

    /// Whether the calling thread is one of this pool's workers.
    pub(super) fn on_own_worker(&self) -> bool {
        let st = self.shared.core.lock();
        st.workers
            .values()
            .any(|w| w.rec.as_ref().is_some_and(|r| r.is_current()))
    }

    fn finish(
        &self,
        end: Option<Instant>,
        start: Instant,
        cancelled_queued: usize,
        stopped_running: usize,
    ) -> ShutdownReport {
        let core = &self.shared.core;
        // A job that shuts down its own pool waits for every worker but its own.
        let inside = usize::from(self.on_own_worker());
        core.wait_until(end, |st| st.threads <= inside);
        // Manager: it exits at once on shutdown; bounded all the same.
        let manager = crate::sync::lock(&self.shared.manager).take();
        if let Some(m) = manager {
            let left = end.map_or(Duration::from_secs(3600), |e| {
                e.saturating_duration_since(Instant::now())
            });
            if let Err(m) = m.join_timeout(left) {
                m.detach();
            }
        }
        let mut st = core.lock();
        let now = Instant::now();
        let mut handles = Vec::new();
        let mut stragglers = Vec::new();
        for slot in st.workers.values_mut() {
            // Detach: drop the handle, keep the slot so the worker can
            // still remove itself when it finally exits.
            handles.extend(slot.handle.take().filter(|h| h.is_finished()));
            let Some(rec) = &slot.rec else { continue };
            if rec.finished.is_set() {
                continue;
            }
            let (state, _) = rec.state();
            stragglers.push(Straggler {
                id: rec.id,
                name: rec.name.clone(),
                job: slot.current.as_ref().map(|c| JobId(c.job)),
                job_age: slot.current.as_ref().map(|c| now - c.started),
                state,
            });
        }
        drop(st);
        handles.extend(core.take_last_exiting());
        for h in handles {
            let _ = h.join();
        }
        for s in &stragglers {
            tracing::warn!(pool = %self.shared.name, straggler = %s, "pool worker did not stop before the deadline");
        }
        ShutdownReport {
            stragglers,
            cancelled_queued,
            stopped_running,
            elapsed: start.elapsed(),
        }
    }
}
