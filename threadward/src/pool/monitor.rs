//! The monitor: one process-wide thread that finds jobs blocked outside
//! the library's waits, or hogging a CPU, in concurrency-managed pools
//! (README.md: "The monitor").
//!
//! It ticks only while some pool is saturated (work queued, no room under
//! the target), like Go's sysmon: every 100 µs, and after 20 ticks that
//! found nothing, doubling up to 1 ms. It looks only at jobs that have run
//! for a tick or more, so a flood of short jobs costs it a lock and a scan. (Go backs off to 10 ms; a blocked job is seen
//! only if it stays asleep across two ticks, so a 10 ms tick would miss
//! most 10 ms blocks. While a pool is saturated the monitor reads two
//! small `/proc` files per running job per tick: a few µs.) Each tick it reads, for every worker whose job
//! counts as running, the thread's scheduler state (`/proc/self/task/TID/stat`)
//! and its time on a CPU (`.../schedstat`). Asleep (`S` or `D`) at two
//! ticks in a row, or at one after the job ran for two ticks: the job is
//! blocked and compensated at once. Runnable
//! for longer than `HOG_AFTER` *and* on a CPU for most of it: a CPU hog,
//! compensated within a bound (cmwq's `wq_cpu_intensive_thresh_us`).
//! Runnable but mostly waiting for a CPU: left alone. (The on-CPU time
//! alone cannot tell "asleep": the kernel updates it for a running task
//! only at scheduler ticks and switches, so a spinning job looks frozen
//! for up to a tick, 4 ms at `HZ=250`; the state can.) A liveness
//! backstop allows one more running job when queued work has not started
//! for `BACKSTOP` (cmwq's mayday, ForkJoinPool's `minimumRunnable`).
//!
//! The thread starts with the first managed pool and exits when none is
//! left, so an idle process without pools has no monitor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::core::Core;
use super::job::Task;
use crate::sync::Doorbell;

const TICK_MIN: Duration = Duration::from_micros(100);
/// Ticks at `TICK_MIN` that find nothing before the monitor backs off
/// (Go's sysmon: 1 ms of quiet at 20 µs).
const QUIET_TICKS: u32 = 20;
const TICK_MAX: Duration = Duration::from_millis(1);
/// A job on a CPU this long is a hog (cmwq: 10 ms).
const HOG_AFTER: Duration = Duration::from_millis(10);
/// Queued work that has not started for this long gets a thread anyway.
const BACKSTOP: Duration = Duration::from_millis(100);

struct Monitor {
    state: Mutex<State>,
    /// How pools wake the monitor (`sync::Doorbell`: announce, look again,
    /// sleep; a loom model pins it): while it ticks, a saturated pool's
    /// submits cost one load.
    bell: Doorbell,
}

#[derive(Default)]
struct State {
    /// The watched pools: each entry dies with its `Pool` (workers still
    /// exiting may hold the core a little longer).
    pools: Vec<(Weak<()>, Weak<Core<Task>>)>,
    running: bool,
}

fn monitor() -> &'static Monitor {
    static M: std::sync::OnceLock<Monitor> = std::sync::OnceLock::new();
    M.get_or_init(|| Monitor {
        state: Mutex::new(State::default()),
        bell: Doorbell::new(),
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
    monitor().bell.ring();
}

/// A pool has work waiting for room: make sure the monitor ticks.
pub(crate) fn poke() {
    monitor().bell.ring_if_sleeping();
}

/// The last sample of one worker's job.
struct Sample {
    job: u64,
    /// Asleep (`S` or `D`) at the last tick.
    asleep: bool,
    /// On-CPU time when the job was first sampled, ns.
    cpu0: u64,
}

/// The thread's state letter and its on-CPU time in ns.
fn sample(tid: i32) -> Option<(u8, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": the name may hold spaces and parentheses.
    let state = *stat.get(stat.rfind(')')? + 2..)?.as_bytes().first()?;
    let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let cpu = sched.split_ascii_whitespace().next()?.parse().ok()?;
    Some((state, cpu))
}

/// Marks the thread gone however it ends, so the next pool starts a new
/// one (the loop runs no user code, but an unwinding thread must not leave
/// the pools without it).
struct Gone;

impl Drop for Gone {
    fn drop(&mut self) {
        lock().running = false;
    }
}

fn run() {
    let gone = Gone;
    let m = monitor();
    let mut tick = TICK_MIN;
    let mut quiet = 0u32;
    let mut samples: HashMap<(usize, u64), Sample> = HashMap::new();
    loop {
        let pools: Vec<Arc<Core<Task>>> = {
            let mut st = lock();
            st.pools.retain(|(a, _)| a.strong_count() > 0);
            if st.pools.is_empty() {
                st.running = false;
                // A normal exit, under the lock: a pool registered after
                // this starts a new thread, which `Gone` must not undo.
                std::mem::forget(gone);
                return;
            }
            st.pools.iter().filter_map(|(_, c)| c.upgrade()).collect()
        };
        let saturated: Vec<&Arc<Core<Task>>> =
            pools.iter().filter(|c| c.saturated(&c.lock())).collect();
        if saturated.is_empty() {
            samples.clear();
            tick = TICK_MIN;
            quiet = 0;
            // Announce the sleep first, then look again: a submit that
            // saturated a pool before the announcement is seen by this
            // second look; one after it sees `sleeping` and pokes.
            m.bell.announce();
            if pools.iter().any(|c| c.saturated(&c.lock())) {
                m.bell.cancel();
                continue;
            }
            drop(saturated);
            drop(pools);
            m.bell.sleep();
            continue;
        }
        let mut acted = false;
        let mut seen = HashMap::new();
        for core in &saturated {
            let key = Arc::as_ptr(core) as usize;
            for (no, tid, job, age) in core.watch_list(TICK_MIN) {
                let Some((state, cpu)) = sample(tid) else {
                    continue;
                };
                let asleep = matches!(state, b'S' | b'D');
                let prev = samples.get(&(key, no)).filter(|p: &&Sample| p.job == job);
                let cpu0 = prev.map_or(cpu, |p| p.cpu0);
                let verdict = match prev {
                    // Asleep, and either asleep at the last tick too or
                    // running for two ticks already: blocked outside the
                    // library's waits. (A brief lock wait is rarely caught
                    // asleep; if it is, one thread too many for a while.)
                    p if asleep && (p.is_some_and(|p| p.asleep) || age >= 2 * TICK_MIN) => {
                        Some(false)
                    }
                    // Runnable long enough, and on a CPU for most of it.
                    Some(_)
                        if !asleep
                            && age >= HOG_AFTER
                            && cpu.saturating_sub(cpu0) >= (HOG_AFTER / 2).as_nanos() as u64 =>
                    {
                        Some(true)
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
                seen.insert((key, no), Sample { job, asleep, cpu0 });
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
        if acted {
            quiet = 0;
            tick = TICK_MIN;
        } else {
            quiet += 1;
            if quiet > QUIET_TICKS {
                tick = (tick * 2).min(TICK_MAX);
            }
        }
        m.bell.nap(tick);
    }
}
