//! Randomized soak: spawn, cancel, stop, panics, pauses, idle timeouts and
//! shutdowns across several pools and managed threads, from several
//! submitter threads at once, with invariants checked as it runs.
//!
//! A test binary with its own `main` (`harness = false`) so the final
//! `/proc/self/task` check is not disturbed by libtest's threads.
//!
//! * `THREADWARD_SOAK_SECS` (default 15) — how long to run. The 10-minute
//!   memory soak: `THREADWARD_SOAK_SECS=600 cargo test --release -p threadward --test soak`
//!   prints RSS every 10 % of the run and fails if it grew by more than
//!   25 % after the first tenth.
//! * `THREADWARD_SOAK_SEED` — replay a run; every failure prints its seed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::task_count;
use threadward::{Job, JobError, Pool, PoolStats, Queue, SpawnError, Thread};

/// The payload of the panics the soak injects on purpose.
const INJECTED: &str = "injected panic";

/// xorshift64*: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Quick,
    Sleep(u64),
    Block,
    Panic,
    Pauses,
}

struct Tracked {
    job: Option<Job<u64>>,
    kind: Kind,
    value: u64,
    runs: Arc<AtomicU32>,
    cancelled_before_start: bool,
}

#[derive(Default)]
struct Tally {
    submitted: AtomicU64,
    refused: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    shut_down: AtomicU64,
    stops: AtomicU64,
    pool_shutdowns: AtomicU64,
    thread_ops: AtomicU64,
}

fn pool_config(i: usize, generation: u64) -> Pool {
    let (min_idle, max, idle_ms, queue) = match i {
        0 => (0, 4, 5, Queue::Unbounded),
        1 => (1, 16, 20, Queue::Bounded(64)),
        _ => (2, 64, 50, Queue::Unbounded),
    };
    Pool::builder()
        .name(format!("soak{i}g{generation}"))
        .min_idle(min_idle)
        .max_threads(max)
        .idle_timeout(Duration::from_millis(idle_ms))
        .stack_size(128 * 1024)
        .drop_deadline(Duration::from_secs(10))
        .queue(queue)
        .build()
        .expect("pool")
}

fn stats_add_up(s: &PoolStats) -> bool {
    s.submitted == s.completed + s.panicked + s.cancelled + s.busy as u64 + s.queued as u64
}

/// Checks one finished job against what it was and what happened to it.
fn settle(t: Tracked, out: Result<u64, JobError>, tally: &Tally) {
    let runs = t.runs.load(SeqCst);
    match out {
        Ok(v) => {
            assert_eq!(v, t.value, "{:?} returned a wrong value", t.kind);
            assert_eq!(runs, 1, "{:?} ran {runs} times", t.kind);
            assert_ne!(t.kind, Kind::Panic);
            tally.completed.fetch_add(1, SeqCst);
        }
        Err(JobError::Panicked { .. }) => {
            assert_eq!(t.kind, Kind::Panic);
            assert_eq!(runs, 1);
            tally.panicked.fetch_add(1, SeqCst);
        }
        Err(JobError::Cancelled) => {
            assert!(
                t.cancelled_before_start,
                "Cancelled without a winning cancel"
            );
            assert_eq!(runs, 0, "a cancelled job ran");
            tally.cancelled.fetch_add(1, SeqCst);
        }
        Err(JobError::ShutDown) => {
            assert_eq!(runs, 0, "a shut-down job ran");
            tally.shut_down.fetch_add(1, SeqCst);
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

fn submitter(
    seed: u64,
    end: Instant,
    pools: Arc<Vec<Mutex<Arc<Pool>>>>,
    generation: Arc<AtomicU64>,
    tally: Arc<Tally>,
) {
    let mut rng = Rng(seed | 1);
    let mut held: Vec<Tracked> = Vec::new();
    let mut threads: Vec<Thread<u64>> = Vec::new();
    let join_bound = Duration::from_secs(20);
    while Instant::now() < end {
        match rng.below(100) {
            // Submit a job of a random kind (the held set stays bounded, so
            // a long run measures the library, not a growing workload).
            0..=49 if held.len() < 256 => {
                let i = rng.below(pools.len() as u64) as usize;
                let pool = pools[i].lock().unwrap().clone();
                let kind = match rng.below(10) {
                    0..=3 => Kind::Quick,
                    4..=5 => Kind::Sleep(rng.below(5)),
                    6 => Kind::Block,
                    7 => Kind::Panic,
                    _ => Kind::Pauses,
                };
                let value = rng.next();
                let runs = Arc::new(AtomicU32::new(0));
                let r = runs.clone();
                let spawned = pool.spawn(move |cx| {
                    r.fetch_add(1, SeqCst);
                    match kind {
                        Kind::Quick => {}
                        Kind::Sleep(ms) => {
                            let _ = cx.sleep(Duration::from_millis(ms));
                        }
                        // Long enough to be stopped mid-wait, bounded so jobs
                        // queued behind it in a saturated pool still run.
                        Kind::Block => {
                            let _ = cx.sleep(Duration::from_millis(300));
                        }
                        Kind::Panic => std::panic::panic_any(INJECTED),
                        Kind::Pauses => {
                            for _ in 0..3 {
                                if cx.pause_point().is_err()
                                    || cx.sleep(Duration::from_micros(200)).is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                    value
                });
                match spawned {
                    Ok(job) => {
                        tally.submitted.fetch_add(1, SeqCst);
                        held.push(Tracked {
                            job: Some(job),
                            kind,
                            value,
                            runs,
                            cancelled_before_start: false,
                        });
                    }
                    Err(SpawnError::ShutDown | SpawnError::QueueFull) => {
                        tally.refused.fetch_add(1, SeqCst);
                    }
                    Err(e) => panic!("spawn failed: {e}"),
                }
            }
            // Cancel one.
            50..=59 if !held.is_empty() => {
                let k = rng.below(held.len() as u64) as usize;
                if held[k].job.as_ref().is_some_and(Job::cancel) {
                    held[k].cancelled_before_start = true;
                }
            }
            // Stop one and settle it.
            60..=67 if !held.is_empty() => {
                let k = rng.below(held.len() as u64) as usize;
                let t = held.swap_remove(k);
                tally.stops.fetch_add(1, SeqCst);
                stop_and_settle(t, join_bound, &tally);
            }
            // Join a job that will finish on its own.
            68..=79 => {
                if let Some(k) = held.iter().position(|t| t.kind != Kind::Block) {
                    let mut t = held.swap_remove(k);
                    let job = t.job.take().expect("held jobs have handles");
                    let out = job
                        .join_timeout(join_bound)
                        .unwrap_or_else(|_| stuck(&format!("{:?} job did not resolve", t.kind)));
                    settle(t, out, &tally);
                }
            }
            // Managed threads: spawn, pause/resume, stop.
            80..=89 => {
                tally.thread_ops.fetch_add(1, SeqCst);
                if threads.len() < 4 || (threads.len() < 8 && rng.below(2) == 0) {
                    let v = rng.next();
                    let t = threadward::spawn("soak-thread", move |cx| {
                        while cx.pause_point().is_ok() && cx.sleep(Duration::from_millis(5)).is_ok()
                        {
                        }
                        v
                    })
                    .expect("thread");
                    threads.push(t);
                } else {
                    let k = rng.below(threads.len() as u64) as usize;
                    let st = threads[k].stopper();
                    if rng.below(2) == 0 {
                        st.pause();
                        st.resume();
                    } else {
                        let t = threads.swap_remove(k);
                        t.stop_timeout(join_bound)
                            .expect("thread did not stop")
                            .expect("thread body failed");
                    }
                }
            }
            // Shut a pool down and replace it (rare).
            90 => {
                let i = rng.below(pools.len() as u64) as usize;
                let g = generation.fetch_add(1, SeqCst);
                let old =
                    std::mem::replace(&mut *pools[i].lock().unwrap(), Arc::new(pool_config(i, g)));
                let report = old.shutdown(Duration::from_secs(10));
                assert!(report.stragglers.is_empty(), "{report}");
                tally.pool_shutdowns.fetch_add(1, SeqCst);
            }
            _ => std::thread::sleep(Duration::from_micros(rng.below(300))),
        }
    }
    for t in held {
        stop_and_settle(t, join_bound, &tally);
    }
    for t in threads {
        t.stop_timeout(join_bound)
            .expect("thread did not stop")
            .expect("thread body");
    }
}

/// Cancels (not started) or stops (running) a job and checks its outcome.
fn stop_and_settle(mut t: Tracked, bound: Duration, tally: &Tally) {
    let job = t.job.take().expect("held jobs have handles");
    if job.cancel() {
        t.cancelled_before_start = true;
    }
    let out = job
        .join_timeout(bound)
        .unwrap_or_else(|_| stuck(&format!("stopped {:?} job did not resolve", t.kind)));
    settle(t, out, tally);
}

/// Fails with everything the registry knows (threads and pools).
fn stuck(what: &str) -> ! {
    panic!("{what}\n{}", threadward::registry::snapshot())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let secs: u64 = std::env::var("THREADWARD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("THREADWARD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("soak: {secs} s, seed {seed} (replay with THREADWARD_SOAK_SEED={seed})");
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Injected job panics are part of the workload, not failures.
        if info.payload().downcast_ref::<&str>() == Some(&INJECTED) {
            return;
        }
        default_hook(info);
        eprintln!("soak FAILED with seed {seed}: rerun with THREADWARD_SOAK_SEED={seed}");
    }));
    let baseline = task_count();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let generation = Arc::new(AtomicU64::new(1));
    let pools: Arc<Vec<Mutex<Arc<Pool>>>> = Arc::new(
        (0..3)
            .map(|i| Mutex::new(Arc::new(pool_config(i, 0))))
            .collect(),
    );
    let tally = Arc::new(Tally::default());
    let failed = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..3u64)
        .map(|k| {
            let (p, g, t, f) = (
                pools.clone(),
                generation.clone(),
                tally.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    submitter(
                        seed.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                        end,
                        p,
                        g,
                        t,
                    )
                }));
                if r.is_err() {
                    f.store(true, SeqCst);
                }
            })
        })
        .collect();
    // Checker + watchdog on this thread.
    let watchdog = end + Duration::from_secs(60);
    let mut rss = Vec::new();
    let mut next_rss = start;
    let mut checks = 0u64;
    while !submitters.iter().all(|h| h.is_finished()) {
        for p in pools.iter() {
            let s = p.lock().unwrap().stats();
            assert!(stats_add_up(&s), "stats do not add up: {s:?}");
            checks += 1;
        }
        if Instant::now() >= next_rss {
            rss.push(rss_kib());
            println!(
                "  t={:>5.1}s rss {} KiB threads {}",
                start.elapsed().as_secs_f64(),
                rss_kib(),
                task_count()
            );
            next_rss += Duration::from_secs(secs.max(10) / 10);
        }
        if Instant::now() > watchdog {
            eprintln!(
                "watchdog: no progress 60 s after the end\n{}",
                threadward::registry::snapshot()
            );
            eprintln!("soak FAILED with seed {seed} (deadlock?)");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for h in submitters {
        h.join().unwrap();
    }
    assert!(!failed.load(SeqCst), "a submitter failed (see above)");
    for p in pools.iter() {
        let pool = p.lock().unwrap().clone();
        let report = pool.shutdown(Duration::from_secs(10));
        assert!(report.stragglers.is_empty(), "{report}");
        let s = pool.stats();
        assert!(stats_add_up(&s), "{s:?}");
    }
    drop(pools);
    let deadline = Instant::now() + Duration::from_secs(10);
    while task_count() > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let threads_left = task_count();
    let t = &tally;
    println!(
        "soak done in {:.1}s: {} jobs submitted ({} refused), {} completed, {} panicked (injected), {} cancelled, {} shut down, {} stops, {} pool shutdowns, {} managed-thread ops, {} stats checks; threads {} (baseline {}); rss first {} KiB last {} KiB",
        start.elapsed().as_secs_f64(),
        t.submitted.load(SeqCst),
        t.refused.load(SeqCst),
        t.completed.load(SeqCst),
        t.panicked.load(SeqCst),
        t.cancelled.load(SeqCst),
        t.shut_down.load(SeqCst),
        t.stops.load(SeqCst),
        t.pool_shutdowns.load(SeqCst),
        t.thread_ops.load(SeqCst),
        checks,
        threads_left,
        baseline,
        rss.first().copied().unwrap_or(0),
        rss_kib(),
    );
    let resolved = t.completed.load(SeqCst)
        + t.panicked.load(SeqCst)
        + t.cancelled.load(SeqCst)
        + t.shut_down.load(SeqCst);
    assert_eq!(
        resolved,
        t.submitted.load(SeqCst),
        "a job did not resolve exactly once"
    );
    assert!(
        threads_left <= baseline,
        "{} threads left over",
        threads_left - baseline
    );
    if secs >= 120 && rss.len() >= 2 {
        let warm = rss[1];
        assert!(
            rss_kib() <= warm + warm / 4,
            "RSS grew from {warm} KiB to {} KiB",
            rss_kib()
        );
    }
}
