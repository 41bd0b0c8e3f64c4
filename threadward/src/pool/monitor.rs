//! The monitor: one process-wide thread that finds jobs blocked outside
//! the library's waits, or hogging a CPU, in concurrency-managed pools
//! (README.md: "The monitor").
//!
//! It ticks only while some pool is saturated (work queued, no room under
//! the target), like Go's sysmon: from 250 µs, doubling to 10 ms while a
//! tick finds nothing to do. Each tick it reads, for every worker whose job
//! counts as running, `/proc/self/task/TID/schedstat` (time on CPU, time
//! waiting for a CPU): both frozen since the last tick means the thread
//! sleeps, so the job is blocked and compensated at once; on-CPU time
//! advancing for longer than `HOG_AFTER` means a CPU hog, compensated
//! within a bound (cmwq's `wq_cpu_intensive_thresh_us`); only the waiting
//! time advancing means it waits for a CPU: left alone. A liveness
//! backstop allows one more running job when queued work has not started
//! for `BACKSTOP` (cmwq's mayday, ForkJoinPool's `minimumRunnable`).
//!
//! The thread starts with the first managed pool and exits when none is
//! left, so an idle process without pools has no monitor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::core::Core;
use super::job::Task;

const TICK_MIN: Duration = Duration::from_micros(250);
const TICK_MAX: Duration = Duration::from_millis(10);
/// A job on a CPU this long is a hog (cmwq: 10 ms).
const HOG_AFTER: Duration = Duration::from_millis(10);
/// Queued work that has not started for this long gets a thread anyway.
const BACKSTOP: Duration = Duration::from_millis(100);

struct Monitor {
    state: Mutex<State>,
    cv: Condvar,
    /// The monitor waits for a poke (no pool saturated): pokes only lock
    /// and notify then, so a saturated pool's submits cost one load.
    sleeping: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The watched pools: each entry dies with its `Pool` (workers still
    /// exiting may hold the core a little longer).
    pools: Vec<(Weak<()>, Weak<Core<Task>>)>,
    running: bool,
    poked: bool,
}

fn monitor() -> &'static Monitor {
    static M: std::sync::OnceLock<Monitor> = std::sync::OnceLock::new();
    M.get_or_init(|| Monitor {
        state: Mutex::new(State::default()),
        cv: Condvar::new(),
        sleeping: AtomicBool::new(true),
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    monitor().state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Watches `core` (a pool with a concurrency target) for as long as
/// `alive` (owned by the `Pool`) lives; drop it, then call [`forget`].
pub(crate) fn watch(alive: &Arc<()>, core: &Arc<Core<Task>>) {
    let mut st = lock();
    st.pools.retain(|(a, _)| a.strong_count() > 0);
    st.pools.push((Arc::downgrade(alive), Arc::downgrade(core)));
    if !st.running {
        let spawned = std::thread::Builder::new()
            .name("threadward-mon".into())
            .stack_size(128 * 1024)
            .spawn(run);
        match spawned {
            Ok(_) => st.running = true,
            // Without a monitor, only the library's waits, `blocking` and
            // hints compensate; the next pool tries again.
            Err(e) => tracing::warn!(error = %e, "no monitor thread for concurrency-managed pools"),
        }
    }
}

/// A watched pool is gone: the monitor re-checks, and exits if it was the
/// last one.
pub(crate) fn forget() {
    lock().poked = true;
    monitor().cv.notify_one();
}

/// A pool has work waiting for room: make sure the monitor ticks.
pub(crate) fn poke() {
    let m = monitor();
    if m.sleeping.load(Ordering::SeqCst) {
        lock().poked = true;
        m.cv.notify_one();
    }
}

/// The last sample of one worker's job.
struct Sample {
    job: u64,
    cpu: u64,
    delay: u64,
}

fn schedstat(tid: i32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut f = s.split_ascii_whitespace().map(|x| x.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

fn run() {
    let m = monitor();
    let mut tick = TICK_MIN;
    let mut samples: HashMap<(usize, u64), Sample> = HashMap::new();
    loop {
        let pools: Vec<Arc<Core<Task>>> = {
            let mut st = lock();
            st.pools.retain(|(a, _)| a.strong_count() > 0);
            if st.pools.is_empty() {
                st.running = false;
                return;
            }
            st.pools.iter().filter_map(|(_, c)| c.upgrade()).collect()
        };
        let saturated: Vec<&Arc<Core<Task>>> =
            pools.iter().filter(|c| c.saturated(&c.lock())).collect();
        if saturated.is_empty() {
            samples.clear();
            tick = TICK_MIN;
            drop(pools);
            let mut st = lock();
            m.sleeping.store(true, Ordering::SeqCst);
            // Re-check under the monitor lock: a poke between the check
            // above and here sets `poked`.
            if !st.poked {
                st = m.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.poked = false;
            m.sleeping.store(false, Ordering::SeqCst);
            continue;
        }
        let mut acted = false;
        let mut seen = HashMap::new();
        for core in &saturated {
            let key = Arc::as_ptr(core) as usize;
            for (no, tid, job, age) in core.watch_list() {
                let Some((cpu, delay)) = schedstat(tid) else {
                    continue;
                };
                let verdict = match samples.get(&(key, no)) {
                    Some(prev) if prev.job == job => {
                        if cpu == prev.cpu && delay == prev.delay {
                            Some(false) // asleep: blocked outside the library
                        } else if cpu > prev.cpu && age >= HOG_AFTER {
                            Some(true) // on a CPU for too long: a hog
                        } else {
                            None // running, or waiting for a CPU
                        }
                    }
                    _ => None,
                };
                if let Some(hog) = verdict {
                    if core.compensate(no, job, hog) {
                        acted = true;
                        if hog {
                            tracing::debug!(job, "pool job hogs a CPU: compensated");
                        } else {
                            tracing::debug!(
                                job,
                                "pool job blocked outside the library's waits: compensated"
                            );
                        }
                    }
                }
                seen.insert((key, no), Sample { job, cpu, delay });
            }
            if core.lock().last_start.elapsed() >= BACKSTOP {
                core.backstop();
                acted = true;
                tracing::debug!("queued work did not start for {BACKSTOP:?}: one more thread");
            }
        }
        samples = seen;
        drop(saturated);
        drop(pools);
        tick = if acted {
            TICK_MIN
        } else {
            (tick * 2).min(TICK_MAX)
        };
        let st = lock();
        let _ = m.cv.wait_timeout(st, tick);
    }
}
