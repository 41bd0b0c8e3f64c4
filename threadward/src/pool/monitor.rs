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
//! ticks in a row, or at one after the job ran for a tick: the job is
//! blocked and compensated at once. Where the kernel allows, context-switch
//! records (`switches.rs`) tell it sooner. Runnable
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
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use super::core::{Adapt, Core, Verdict};
use super::job::Task;
use super::service::Service;
use super::switches::{Switches, WorkerKey};

const TICK_MIN: Duration = Duration::from_micros(100);
/// The tick while blocks were found in the last `FAST_FOR` (Go's sysmon
/// looks every 20 µs while needed): a block is then seen in ~2 ticks. Only
/// then: a CPU-only flood is saturated too, and looks this often would
/// cost it a good part of a CPU.
const TICK_FAST: Duration = Duration::from_micros(50);
const FAST_FOR: Duration = Duration::from_millis(20);
/// The monitor's nap while a pool that is no longer saturated keeps
/// adaptive places (they decay over ~50 ms).
const DECAY_TICK: Duration = Duration::from_millis(5);
/// How long after a found block the monitor waits on switch records.
const RECORDS_FOR: Duration = Duration::from_millis(500);
/// Ticks at `TICK_MIN` that find nothing before the monitor backs off
/// (Go's sysmon: 1 ms of quiet at 20 µs).
const QUIET_TICKS: u32 = 20;
const TICK_MAX: Duration = Duration::from_millis(1);
/// A job on a CPU this long is a hog (cmwq: 10 ms).
const HOG_AFTER: Duration = Duration::from_millis(10);
/// How often the monitor looks whether jobs it found blocked run again
/// (the re-count pass), and how many per pool at most per pass: ~7 µs
/// each (a fresh `/proc` open and read), so at most ~3 % of a CPU.
const RECOUNT_EVERY: Duration = Duration::from_millis(1);
const RECOUNT_MAX: usize = 4;
/// Queued work that has not started for this long gets a thread anyway.
const BACKSTOP: Duration = Duration::from_millis(100);

fn service() -> &'static Service<Weak<Core<Task>>> {
    static S: OnceLock<Service<Weak<Core<Task>>>> = OnceLock::new();
    S.get_or_init(|| Service::new("threadward-mon"))
}

/// Watches `core` (a pool with a concurrency target) for as long as
/// `alive` (owned by the `Pool`) lives; drop it, then call [`forget`].
pub(crate) fn watch(alive: &Arc<()>, core: &Arc<Core<Task>>) {
    if let Err(e) = service().register(alive, Arc::downgrade(core), run) {
        // Without a monitor, only the library's waits, `blocking` and
        // hints compensate; the next pool tries again.
        tracing::warn!(error = %e, "no monitor thread for concurrency-managed pools");
        crate::sync::incident(
            crate::sync::IncidentKind::NoMonitor,
            format!("no monitor thread for concurrency-managed pools: {e}"),
        );
    }
}

/// A watched pool is gone: the monitor re-checks, and ends if it was the
/// last one.
pub(crate) fn forget() {
    service().bell.ring();
}

/// A pool has work waiting for room: make sure the monitor ticks.
pub(crate) fn poke() {
    service().bell.ring_if_sleeping();
}

/// The last sample of one worker's job.
struct Sample {
    job: u64,
    /// Asleep (`S` or `D`) at the last tick.
    asleep: bool,
    /// On-CPU time when the job was first sampled, ns.
    cpu0: u64,
}

/// A watched thread's two `/proc` files, kept open while its job is
/// watched and read with `pread` (a fresh open and read of both cost
/// ~3x as much per look). Only the jobs being watched have one: about the
/// pool's target per pool, never one per worker.
struct Probe {
    tid: i32,
    stat: std::fs::File,
    sched: std::fs::File,
}

impl Probe {
    fn open(tid: i32) -> Option<Probe> {
        let dir = format!("/proc/self/task/{tid}");
        Some(Probe {
            tid,
            stat: std::fs::File::open(format!("{dir}/stat")).ok()?,
            sched: std::fs::File::open(format!("{dir}/schedstat")).ok()?,
        })
    }

    /// The thread's state letter and its on-CPU time in ns.
    fn sample(&self, buf: &mut [u8]) -> Option<(u8, u64)> {
        use std::os::unix::fs::FileExt;
        let n = self.stat.read_at(buf, 0).ok()?;
        let state = state_letter(buf.get(..n)?)?;
        let n = self.sched.read_at(buf, 0).ok()?;
        let sched = std::str::from_utf8(buf.get(..n)?).ok()?;
        let cpu = sched.split_ascii_whitespace().next()?.parse().ok()?;
        Some((state, cpu))
    }
}

/// Thread `tid`'s state letter, from a fresh read of its `stat` file.
fn thread_state(tid: i32, buf: &mut [u8]) -> Option<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()?;
    let n = f.read(buf).ok()?;
    state_letter(buf.get(..n)?)
}

/// The state letter of a `stat` file: "tid (comm) S ...", where the name
/// may hold spaces and parentheses.
fn state_letter(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// A watched pool's key in the monitor's maps: its core's address.
fn key_of(core: &Arc<Core<Task>>) -> usize {
    Arc::as_ptr(core) as usize
}

fn run() {
    let svc = service();
    let guard = svc.guard();
    let me = crate::record::current();
    let mut tick = TICK_MIN;
    let mut quiet = 0u32;
    let mut samples: HashMap<(usize, u64), Sample> = HashMap::new();
    let mut probes: HashMap<(usize, u64), Probe> = HashMap::new();
    // Per pool: its block rate, for the adaptive places.
    let mut adapt: HashMap<usize, Adapt> = HashMap::new();
    // Per pool: the re-count pass's cursor (a worker number).
    let mut recount_at: HashMap<usize, u64> = HashMap::new();
    let mut last_recount = std::time::Instant::now();
    // Context-switch records, tried at the first saturation.
    let mut switches: Option<Switches> = None;
    let mut tried = false;
    let mut was_recording = false;
    // When the last block outside the library's waits was found.
    let mut blocks_at: Option<std::time::Instant> = None;
    let mut buf = vec![0u8; 1024];
    // Naps of 100 µs last ~160 µs under the default 50 µs timer slack.
    if let Err(e) = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1)) {
        tracing::debug!(error = %e, "monitor: timer slack unchanged");
    }
    loop {
        let Some(list) = svc.live(|_| true) else {
            std::mem::forget(guard); // `live` marked the thread gone
            return;
        };
        let pools: Vec<Arc<Core<Task>>> = list.iter().filter_map(Weak::upgrade).collect();
        let saturated: Vec<&Arc<Core<Task>>> =
            pools.iter().filter(|c| c.saturated(&c.lock())).collect();
        if saturated.is_empty() {
            samples.clear();
            probes.clear();
            // Armed workers stay armed (their next job may block at once);
            // those whose pool or thread is gone are disarmed.
            if let Some(sw) = switches.as_mut() {
                let live: std::collections::HashSet<WorkerKey> = pools
                    .iter()
                    .flat_map(|c| {
                        let key = key_of(c);
                        c.worker_tids().into_iter().map(move |(no, _)| (key, no))
                    })
                    .collect();
                sw.retain(|k| live.contains(k));
            }
            // The adaptive places outlive a queue that drained for a
            // moment (no end of the blocks), but not the blocks: while a
            // pool keeps some, the monitor naps instead of sleeping and
            // lets them decay with the block rate (a pool that is not
            // saturated would otherwise start jobs in stale places).
            adapt.retain(|key, _| pools.iter().any(|c| key_of(c) == *key));
            recount_at.retain(|key, _| pools.iter().any(|c| key_of(c) == *key));
            let now = std::time::Instant::now();
            let mut decaying = false;
            for c in &pools {
                if let Some(a) = adapt.get_mut(&(key_of(c))) {
                    if a.set > 0 {
                        a.set = a.places(now);
                        c.set_adaptive(a.set);
                        decaying |= a.set > 0;
                    }
                }
            }
            tick = TICK_MIN;
            quiet = 0;
            // Announce the sleep first, then look again: a submit that
            // saturated a pool before the announcement is seen by this
            // second look; one after it sees `sleeping` and pokes.
            svc.bell.announce();
            if pools.iter().any(|c| c.saturated(&c.lock())) {
                svc.bell.cancel();
                continue;
            }
            drop(saturated);
            drop(pools);
            if decaying {
                super::service::idle(&me, || svc.bell.nap(DECAY_TICK));
                svc.bell.cancel();
            } else {
                super::service::idle(&me, || svc.bell.sleep());
            }
            continue;
        }
        if !tried {
            tried = true;
            match Switches::open() {
                Ok(s) => {
                    tracing::debug!("pool monitor: context-switch records in use");
                    switches = Some(s);
                }
                Err(why) => tracing::info!(
                    %why,
                    "pool monitor: no context-switch records; blocks are found by /proc looks"
                ),
            }
        }
        let mut armed: std::collections::HashSet<WorkerKey> = std::collections::HashSet::new();
        let mut acted = false;
        let recount_now = last_recount.elapsed() >= RECOUNT_EVERY;
        if recount_now {
            last_recount = std::time::Instant::now();
        }
        let mut kept: HashMap<(usize, u64), Probe> = HashMap::new();
        let mut seen = HashMap::new();
        for core in &saturated {
            let key = key_of(core);
            let rate = adapt.entry(key).or_default();
            for (no, tid, job, age) in core.watch_list(Duration::ZERO) {
                if age < tick.min(TICK_MIN) {
                    continue;
                }
                // A probe per watched worker, reopened if its thread changed.
                let probe = match probes.remove(&(key, no)).filter(|p| p.tid == tid) {
                    Some(p) => Some(p),
                    None => Probe::open(tid),
                };
                let Some(probe) = probe else {
                    continue;
                };
                let got = probe.sample(&mut buf);
                kept.insert((key, no), probe);
                let Some((state, cpu)) = got else {
                    continue;
                };
                let asleep = matches!(state, b'S' | b'D');
                let prev = samples.get(&(key, no)).filter(|p: &&Sample| p.job == job);
                let cpu0 = prev.map_or(cpu, |p| p.cpu0);
                let verdict = match prev {
                    // Asleep, and either asleep at the last tick too or
                    // running for a tick already: blocked outside the
                    // library's waits. (A brief lock wait is rarely caught
                    // asleep; if it is, one thread too many for a while.
                    // Two ticks' age made the mixed flood's blocks go
                    // unseen ~215 µs on average; one tick, ~160 µs.)
                    p if asleep && (p.is_some_and(|p| p.asleep) || age >= tick.min(TICK_MIN)) => {
                        Some(Verdict::Blocked)
                    }
                    // Runnable long enough, and on a CPU for most of it.
                    Some(_)
                        if !asleep
                            && age >= HOG_AFTER
                            && cpu.saturating_sub(cpu0) >= (HOG_AFTER / 2).as_nanos() as u64 =>
                    {
                        Some(Verdict::Hog)
                    }
                    _ => None,
                };
                if let Some(v) = verdict {
                    if core.compensate(no, job, v) {
                        acted = true;
                        if v == Verdict::Blocked {
                            blocks_at = Some(std::time::Instant::now());
                            rate.found(age);
                        }
                        if v == Verdict::Hog {
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
            if recount_now {
                let cursor = recount_at.entry(key).or_default();
                for (no, tid, job) in core.recount_list(*cursor, RECOUNT_MAX) {
                    *cursor = no;
                    if thread_state(tid, &mut buf) == Some(b'R') && core.recount(no, job) {
                        acted = true;
                        tracing::debug!(job, "compensated pool job runs again: counted again");
                    }
                }
            }
            // Set every tick (one lock): the pool's own count is what is
            // compared, not a cache (a new pool may reuse a gone one's
            // address).
            rate.set = rate.places(std::time::Instant::now());
            core.set_adaptive(rate.set);
            if core.since_last_start() >= BACKSTOP {
                core.backstop();
                acted = true;
                tracing::debug!("queued work did not start for {BACKSTOP:?}: one more thread");
            }
        }
        samples = seen;
        // Probes of workers no longer watched close here, and their
        // switch records stop.
        probes = std::mem::take(&mut kept);
        if let Some(sw) = switches.as_mut() {
            // Every worker of a saturated pool is armed (up to the bound)
            // and stays armed while it lives: its next job may block at
            // its first instant, before any look (arming costs tens of
            // µs: never per job).
            for core in &saturated {
                let key = key_of(core);
                for (no, tid) in core.worker_tids() {
                    if matches!(sw.arm((key, no), tid), Ok(true)) {
                        armed.insert((key, no));
                    }
                }
            }
            for core in &pools {
                let key = key_of(core);
                armed.extend(core.worker_tids().into_iter().map(|(no, _)| (key, no)));
            }
            sw.retain(|k| armed.contains(k));
        }
        drop(saturated);
        let fast = blocks_at.is_some_and(|t| t.elapsed() < FAST_FOR);
        if acted || fast {
            quiet = 0;
            tick = if fast { TICK_FAST } else { TICK_MIN };
        } else {
            quiet += 1;
            if quiet > QUIET_TICKS {
                tick = (tick * 2).min(TICK_MAX);
            }
        }
        // Records are waited on only while foreign blocks keep coming: a
        // CPU-bound worker's preemptions are records too, each a wake-up
        // (a pool saturated by CPU-only jobs cost the monitor 38 % of a
        // CPU that way, against 2 % with naps).
        let recording = blocks_at.is_some_and(|t| t.elapsed() < RECORDS_FOR);
        if let Some(sw) = switches.as_mut() {
            // Records written while nobody read them are stale (and a full
            // ring drops the newest): a window starts from a clean slate.
            if recording && !was_recording {
                sw.forget_records();
            }
        }
        was_recording = recording;
        match switches.as_mut().filter(|s| recording && !s.is_empty()) {
            // Until the tick ends, act on every record that says a watched
            // worker went to sleep.
            Some(sw) => {
                let until = std::time::Instant::now() + tick;
                loop {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    for ((key, no), tid) in sw.wait(left) {
                        let Some(core) = pools.iter().find(|c| key_of(c) == key) else {
                            continue;
                        };
                        // A brief wait (a lock, malloc) is over by now:
                        // only a thread still asleep is compensated.
                        if !matches!(thread_state(tid, &mut buf), Some(b'S' | b'D')) {
                            continue;
                        }
                        let Some((job, age)) = core.watched_job(no, tid) else {
                            continue;
                        };
                        if core.compensate(no, job, Verdict::Blocked) {
                            blocks_at = Some(std::time::Instant::now());
                            adapt.entry(key).or_default().found(age);
                            tracing::debug!(job, "pool job went to sleep outside the library's waits (switch record): compensated");
                        }
                    }
                }
                drop(pools);
            }
            None => {
                drop(pools);
                // A tick's nap is short: the thread shows as running (it
                // is watching); only its long sleep shows as idle.
                svc.bell.nap(tick);
            }
        }
    }
}
