//! Scenario 4: stopping N running jobs blocked in a stop-aware wait, and
//! the floor, a bare condvar broadcast to N parked std threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{ms, settle_threads, thread_count, wait_for};

/// A job blocks this long unless stopped.
const LONG: Duration = Duration::from_secs(3600);
/// Waits in this scenario give up after this long.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One repetition: ms from the stop request until the last job observed it,
/// and until the stopping call returned (workers idle again or joined).
#[derive(Debug, Clone, Copy, Default)]
pub struct StopRep {
    /// Until the last job woke and saw the stop.
    pub observed: Option<f64>,
    /// Until the call returned: threads joined, or the pool idle again.
    pub returned: Option<f64>,
}

/// Which stop path is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// N std threads waiting on one condvar; flag + `notify_all`, then join.
    Broadcast,
    /// `Pool::shutdown` of a pool running N jobs in `cx.sleep`.
    PoolShutdown,
    /// `Job::cancel` of each of N running jobs; workers stay (`wait_idle`).
    PoolCancel,
    /// `threadward::stop_all` of N managed threads in `cx.sleep`.
    StopAll,
}

impl StopKind {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            StopKind::Broadcast => "floor: std threads, Condvar notify_all (+ join)",
            StopKind::PoolShutdown => "threadward Pool::shutdown",
            StopKind::PoolCancel => "threadward Job::cancel each (workers kept)",
            StopKind::StopAll => "threadward stop_all (whole threads)",
        }
    }

    /// A short label for charts.
    pub fn short(self) -> &'static str {
        match self {
            StopKind::Broadcast => "broadcast",
            StopKind::PoolShutdown => "tw shutdown",
            StopKind::PoolCancel => "tw cancel",
            StopKind::StopAll => "tw stop_all",
        }
    }
}

/// Records when jobs saw the stop, relative to a base instant.
struct Seen {
    base: Instant,
    started: AtomicUsize,
    observed: AtomicUsize,
    last_ns: AtomicU64,
}

impl Seen {
    fn new() -> Arc<Seen> {
        Arc::new(Seen {
            base: Instant::now(),
            started: AtomicUsize::new(0),
            observed: AtomicUsize::new(0),
            last_ns: AtomicU64::new(0),
        })
    }
    /// A job's body: count as started, block in a stop-aware sleep, and
    /// record the moment the stop was observed.
    fn block(&self, cx: &threadward::Context) {
        self.started.fetch_add(1, Ordering::AcqRel);
        if cx.sleep(LONG).is_err() {
            self.mark();
        }
    }
    fn mark(&self) {
        let t = self.base.elapsed().as_nanos() as u64;
        self.last_ns.fetch_max(t, Ordering::AcqRel);
        self.observed.fetch_add(1, Ordering::AcqRel);
    }
    fn since(&self, t0: Duration) -> Option<f64> {
        let last = Duration::from_nanos(self.last_ns.load(Ordering::Acquire));
        Some(ms(last.saturating_sub(t0)))
    }
    fn all_started(&self, n: usize) -> bool {
        let ok = wait_for(TIMEOUT, || self.started.load(Ordering::Acquire) == n);
        // Let the last ones get from "started" into their wait.
        thread::sleep(Duration::from_millis(20));
        ok
    }
    fn all_observed(&self, n: usize) -> bool {
        wait_for(TIMEOUT, || self.observed.load(Ordering::Acquire) == n)
    }
}

/// One repetition of `kind` with `n` blocked jobs.
pub fn run(kind: StopKind, n: usize) -> StopRep {
    let base_threads = thread_count();
    let seen = Seen::new();
    let rep = match kind {
        StopKind::Broadcast => broadcast(&seen, n),
        StopKind::PoolShutdown | StopKind::PoolCancel => pool(&seen, n, kind),
        StopKind::StopAll => stop_all(&seen, n),
    };
    settle_threads(base_threads, Duration::from_secs(5));
    rep
}

fn broadcast(seen: &Arc<Seen>, n: usize) -> StopRep {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (g, s) = (gate.clone(), seen.clone());
            thread::Builder::new()
                .stack_size(threadward::DEFAULT_STACK_SIZE)
                .spawn(move || {
                    let mut stop = g.0.lock().unwrap();
                    s.started.fetch_add(1, Ordering::AcqRel);
                    while !*stop {
                        stop = g.1.wait(stop).unwrap();
                    }
                    drop(stop);
                    s.mark();
                })
                .expect("spawn")
        })
        .collect();
    let ok = seen.all_started(n);
    let t0 = seen.base.elapsed();
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let observed = seen.all_observed(n).then(|| seen.since(t0)).flatten();
    for h in handles {
        let _ = h.join();
    }
    let returned = ms(seen.base.elapsed() - t0);
    StopRep {
        observed: observed.filter(|_| ok),
        returned: ok.then_some(returned),
    }
}

fn pool(seen: &Arc<Seen>, n: usize, kind: StopKind) -> StopRep {
    let pool = threadward::Pool::builder()
        .name("tw-stop")
        .max_threads(n + 64)
        .build()
        .expect("pool");
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let s = seen.clone();
            pool.spawn(move |cx| s.block(cx)).expect("spawn")
        })
        .collect();
    let ok = seen.all_started(n);
    let t0 = seen.base.elapsed();
    let returned = if kind == StopKind::PoolShutdown {
        let report = pool.shutdown(TIMEOUT);
        let r = ms(seen.base.elapsed() - t0);
        report.stragglers.is_empty().then_some(r)
    } else {
        for j in &jobs {
            j.cancel();
        }
        let idle = pool.wait_idle_timeout(TIMEOUT);
        let r = ms(seen.base.elapsed() - t0);
        pool.shutdown(TIMEOUT);
        idle.then_some(r)
    };
    let observed = seen.all_observed(n).then(|| seen.since(t0)).flatten();
    drop(jobs);
    StopRep {
        observed: observed.filter(|_| ok),
        returned: returned.filter(|_| ok),
    }
}

fn stop_all(seen: &Arc<Seen>, n: usize) -> StopRep {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let s = seen.clone();
            threadward::spawn(format!("tw-stop-{i}"), move |cx| s.block(cx)).expect("spawn")
        })
        .collect();
    let ok = seen.all_started(n);
    let t0 = seen.base.elapsed();
    let results = threadward::stop_all(threads);
    let returned = ms(seen.base.elapsed() - t0);
    let all_ok = ok && results.iter().all(Result::is_ok);
    let observed = seen.all_observed(n).then(|| seen.since(t0)).flatten();
    StopRep {
        observed: observed.filter(|_| all_ok),
        returned: all_ok.then_some(returned),
    }
}
