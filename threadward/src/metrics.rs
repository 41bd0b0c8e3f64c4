//! Pool and thread counts through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`), so a service exports them with the
//! exporter it already uses (Prometheus and others are `metrics`
//! recorders).
//!
//! Sampled, never per job: [`publish`] starts a managed thread that every
//! interval takes a [`snapshot`](crate::registry::snapshot) and sets
//! gauges and absolute counters from it ([`sample`] does one round, for a
//! scrape hook of your own). Per pool, labelled `pool`:
//!
//! | metric | kind | from [`PoolStats`](crate::PoolStats) |
//! |---|---|---|
//! | `threadward_pool_threads` | gauge | `threads` |
//! | `threadward_pool_idle` | gauge | `idle` |
//! | `threadward_pool_busy` | gauge | `busy` |
//! | `threadward_pool_running` | gauge | `running` |
//! | `threadward_pool_queued` | gauge | `queued` |
//! | `threadward_pool_jobs_submitted_total` | counter | `submitted` |
//! | `threadward_pool_jobs_completed_total` | counter | `completed` |
//! | `threadward_pool_jobs_panicked_total` | counter | `panicked` |
//! | `threadward_pool_jobs_cancelled_total` | counter | `cancelled` |
//! | `threadward_pool_compensated_total` | counter | `compensated` |
//! | `threadward_pool_stalls_total` | counter | `stalls` |
//! | `threadward_pool_backstops_total` | counter | `backstops` |
//!
//! And `threadward_threads` (gauge, labelled `state`): managed threads by
//! state; `threadward_incidents_total` (counter).

use std::io;
use std::time::Duration;

use crate::thread::Thread;

/// One sampling round: sets every metric from a fresh snapshot.
///
/// # Examples
///
/// ```
/// let pool = threadward::Pool::builder().name("sampled").build().unwrap();
/// threadward::metrics::sample(); // no recorder installed: a no-op
/// # drop(pool);
/// ```
pub fn sample() {
    let snap = crate::registry::snapshot();
    for p in &snap.pools {
        let s = &p.stats;
        let pool = p.name.to_string();
        let gauges = [
            ("threadward_pool_threads", s.threads),
            ("threadward_pool_idle", s.idle),
            ("threadward_pool_busy", s.busy),
            ("threadward_pool_running", s.running),
            ("threadward_pool_queued", s.queued),
        ];
        for (name, v) in gauges {
            metrics::gauge!(name, "pool" => pool.clone()).set(v as f64);
        }
        let counters = [
            ("threadward_pool_jobs_submitted_total", s.submitted),
            ("threadward_pool_jobs_completed_total", s.completed),
            ("threadward_pool_jobs_panicked_total", s.panicked),
            ("threadward_pool_jobs_cancelled_total", s.cancelled),
            ("threadward_pool_compensated_total", s.compensated),
            ("threadward_pool_stalls_total", s.stalls),
            ("threadward_pool_backstops_total", s.backstops),
        ];
        for (name, v) in counters {
            metrics::counter!(name, "pool" => pool.clone()).absolute(v);
        }
    }
    for (state, n) in snap.threads_by_state() {
        metrics::gauge!("threadward_threads", "state" => state).set(n as f64);
    }
    metrics::counter!("threadward_incidents_total").absolute(snap.incidents_total);
}

/// Samples every `every` (at least 1 ms) on a managed thread named
/// `threadward-metrics`, until the returned guard is dropped.
///
/// # Errors
///
/// The OS error if the thread cannot be created.
///
/// # Examples
///
/// ```
/// let publisher = threadward::metrics::publish(std::time::Duration::from_secs(10)).unwrap();
/// drop(publisher); // stops sampling
/// ```
pub fn publish(every: Duration) -> io::Result<Publisher> {
    let every = every.max(Duration::from_millis(1));
    let thread = crate::spawn("threadward-metrics", move |cx| loop {
        sample();
        if cx.sleep(every).is_err() {
            return;
        }
    })?;
    Ok(Publisher {
        thread: Some(thread),
    })
}

/// Keeps [`publish`]'s sampling thread running.
#[must_use = "dropping the publisher stops the sampling at once"]
#[derive(Debug)]
pub struct Publisher {
    thread: Option<Thread<()>>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.stop();
        }
    }
}
