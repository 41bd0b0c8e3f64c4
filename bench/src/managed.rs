//! Scenario 8: concurrency management (the cmwq issue's targets).
//!
//! * dispatch to an idle warm pool after an idle gap of 50 µs, 300 µs and
//!   2 ms, against the parked-worker floor at the same gap;
//! * a pool whose `concurrency` jobs are all busy, one of which blocks
//!   while a job is queued: how long until the queued job starts, when the
//!   block is a library wait, an unhinted `std::thread::sleep` (the monitor
//!   finds it), or `std::thread::sleep` inside `Context::blocking`;
//! * a mix of 95 % 1 µs jobs and 5 % jobs that sleep 10 ms in
//!   `std::thread::sleep`: throughput and peak threads of the default
//!   pool (unhinted and hinted) against `Concurrency::Unlimited`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use serde::Serialize;
use threadward::{Concurrency, Context, JobHint, Pool};

use crate::latency::dispatch_sample;
use crate::systems::Kind;
use crate::util::{median, Latency};

/// Dispatch latency after one idle gap.
#[derive(Debug, Clone, Serialize)]
pub struct GapRow {
    /// The idle gap before each sample, µs.
    pub gap_us: u64,
    /// The floor: a parked worker fed through `Mutex<Option>` and woken by
    /// `unpark`, measured one way like the pools (submit -> first
    /// instruction), not as half a ping-pong.
    pub floor: Latency,
    /// The bare `Mutex<VecDeque>` + `Condvar` queue, notify after unlock.
    pub condvar: Latency,
    /// threadward's default pool.
    pub threadward: Latency,
}

/// Queued-job start latency after a running job blocks.
#[derive(Debug, Clone, Serialize)]
pub struct BlockRow {
    /// How the running job blocks.
    pub how: String,
    /// From the block to the queued job's first instruction.
    pub start: Latency,
}

/// One system on the mixed workload.
#[derive(Debug, Clone, Serialize)]
pub struct MixRow {
    /// Which pool and hint.
    pub system: String,
    /// Jobs per second (thousands), median of the repetitions.
    pub kjobs_per_s: Option<f64>,
    /// Most threads the pool had.
    pub peak_threads: Option<usize>,
}

/// Everything scenario 8 measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Managed {
    /// Dispatch by idle gap.
    pub gaps: Vec<GapRow>,
    /// Replacement of a blocked job.
    pub blocks: Vec<BlockRow>,
    /// The mixed workload.
    pub mix: Vec<MixRow>,
}

const GAPS_US: [u64; 3] = [50, 300, 2000];

/// Dispatch samples after each idle gap: the one-way floor, the bare
/// condvar queue and threadward, one sample of each in turn so that the
/// machine's drift hits all alike, each after the same idle gap.
///
/// (An earlier version compared threadward's one-way submit -> start with
/// half a park/unpark ping-pong: 2.1-2.6x "the floor" here, against
/// 1.0-1.2x in scenario 2, whose floor is this one-way hand-off. Half a
/// round trip averages the woken partner with the main thread's own
/// wake-up and is no floor for a one-way dispatch.)
fn gaps(samples: usize) -> Vec<GapRow> {
    let (tx, rx) = bounded::<Instant>(1);
    let subjects = [Kind::ParkWorker, Kind::CondvarAfter, Kind::Threadward];
    let execs: Vec<_> = subjects.iter().map(|k| k.build(4)).collect();
    for e in &execs {
        for _ in 0..50 {
            dispatch_sample(e.as_ref(), &tx, &rx);
        }
    }
    let rows = GAPS_US
        .iter()
        .map(|&gap_us| {
            let gap = Duration::from_micros(gap_us);
            let mut v = vec![Vec::with_capacity(samples); execs.len()];
            for _ in 0..samples {
                for (i, e) in execs.iter().enumerate() {
                    thread::sleep(gap);
                    v[i].push(dispatch_sample(e.as_ref(), &tx, &rx));
                }
            }
            GapRow {
                gap_us,
                floor: Latency::from_ns(&v[0]),
                condvar: Latency::from_ns(&v[1]),
                threadward: Latency::from_ns(&v[2]),
            }
        })
        .collect();
    for e in execs {
        e.shutdown();
    }
    rows
}

/// How the measured job blocks.
#[derive(Debug, Clone, Copy)]
enum Block {
    Library,
    Unhinted,
    Blocking,
}

impl Block {
    fn name(self) -> &'static str {
        match self {
            Block::Library => "library wait (Context::sleep)",
            Block::Unhinted => "std::thread::sleep, no hint (monitor)",
            Block::Blocking => "std::thread::sleep in Context::blocking",
        }
    }

    fn run(self, cx: &Context) {
        let d = Duration::from_millis(30);
        match self {
            Block::Library => drop(cx.sleep(d)),
            Block::Unhinted => thread::sleep(d),
            Block::Blocking => cx.blocking(|| thread::sleep(d)),
        }
    }
}

/// `reps` samples: all `target` slots busy (one spinning `Cpu` job per
/// slot but one, plus the job that will block), a job queued; the block
/// starts, and the queued job's start is timed from it.
fn block_replacement(how: Block, reps: usize) -> Latency {
    let target = thread::available_parallelism().map_or(2, |n| n.get());
    // Learning off: this measures how fast a block is *seen* each time
    // (the same job blocking 200 times would be learned after a few, and
    // then run as MayBlock: the bursts show that).
    let pool = Pool::builder()
        .name("tw-block")
        .concurrency(Concurrency::Limit(target))
        .learn_hints(false)
        .build()
        .expect("pool");
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let mut spinners = Vec::new();
        for _ in 0..target - 1 {
            let (s, r) = (stop.clone(), running.clone());
            spinners.push(
                pool.spawn_hinted(JobHint::Cpu, move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                    while !s.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .expect("spawn"),
            );
        }
        let go = Arc::new(AtomicBool::new(false));
        // The blocker notes when it blocks without waking anyone: a channel
        // send here would wake this thread inside the measured window, to
        // compete with the woken worker for a CPU.
        let t0_slot = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let t0_w = t0_slot.clone();
        let (g, r) = (go.clone(), running.clone());
        // The blocker is an ordinary (unhinted) job; the spinners are
        // `Cpu` jobs so that the monitor never gives the queued job a
        // thread because of them.
        let blocker = pool
            .spawn(move |cx| {
                r.fetch_add(1, Ordering::SeqCst);
                while !g.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                *t0_w.lock().expect("t0") = Some(Instant::now());
                how.run(cx);
            })
            .expect("spawn");
        while running.load(Ordering::SeqCst) < target {
            thread::yield_now();
        }
        let (s_tx, s_rx) = bounded::<Instant>(1);
        let queued = pool
            .spawn(move |_| s_tx.send(Instant::now()).expect("start"))
            .expect("spawn");
        go.store(true, Ordering::Release);
        let started = s_rx.recv_timeout(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        let t0 = *t0_slot.lock().expect("t0");
        if let (Ok(s), Some(t0)) = (started, t0) {
            out.push(s.saturating_duration_since(t0).as_nanos() as u64);
        }
        let _ = queued.join();
        let _ = blocker.join();
        for s in spinners {
            let _ = s.join();
        }
    }
    pool.shutdown(Duration::from_secs(10));
    Latency::from_ns(&out)
}

/// One job of the mixed workload: a sleeper blocks 10 ms in
/// `std::thread::sleep`, the rest spin ~1 µs; each counts into `done`.
fn mixed_job(sleeper: bool, done: Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    move || {
        if sleeper {
            thread::sleep(Duration::from_millis(10));
        } else {
            let end = Instant::now() + Duration::from_micros(1);
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The mixed workload on one pool setup: `n` jobs from one submitter.
fn mix(n: usize, unlimited: bool, hinted: bool) -> (Option<f64>, Option<usize>) {
    let mut b = Pool::builder().name("tw-mix").max_threads(4096);
    if unlimited {
        b = b.concurrency(Concurrency::Unlimited);
    }
    let pool = b.build().expect("pool");
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    for i in 0..n {
        let d = done.clone();
        let sleeper = i % 20 == 0;
        let hint = if sleeper && hinted {
            JobHint::MayBlock
        } else {
            JobHint::Auto
        };
        let job = mixed_job(sleeper, d);
        drop(pool.spawn_hinted(hint, move |_| job()).expect("spawn"));
    }
    let ok = pool.wait_idle_timeout(Duration::from_secs(60));
    let dt = t0.elapsed();
    let peak = pool.stats().peak;
    pool.shutdown(Duration::from_secs(10));
    let rate = ok.then(|| done.load(Ordering::Relaxed) as f64 / dt.as_secs_f64() / 1000.0);
    (rate, Some(peak))
}

/// The same mixed workload on another system (tokio `spawn_blocking`,
/// smol `blocking`), sized as its defaults are.
fn mix_other(n: usize, kind: Kind) -> (Option<f64>, Option<usize>) {
    let sys = kind.build(kind.cap().unwrap_or(512));
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    for i in 0..n {
        let d = done.clone();
        let sleeper = i % 20 == 0;
        sys.submit(Box::new(mixed_job(sleeper, d)));
    }
    let deadline = t0 + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_micros(200));
    }
    let dt = t0.elapsed();
    let ok = done.load(Ordering::Relaxed) == n;
    let peak = sys.peak_threads();
    sys.shutdown();
    (ok.then(|| n as f64 / dt.as_secs_f64() / 1000.0), peak)
}

/// Runs scenario 8; `tick` after each step.
pub fn run(quick: bool, mut tick: impl FnMut()) -> Managed {
    let samples = if quick { 200 } else { 1000 };
    let reps = if quick { 30 } else { 200 };
    let mix_n = if quick { 4000 } else { 20_000 };
    let mix_reps = if quick { 1 } else { 3 };
    let gaps = gaps(samples);
    tick();
    let blocks = [Block::Library, Block::Unhinted, Block::Blocking]
        .into_iter()
        .map(|how| {
            let start = block_replacement(how, reps);
            tick();
            BlockRow {
                how: how.name().into(),
                start,
            }
        })
        .collect();
    // The rows: threadward's three setups, then the peers (the report's
    // targets read them by position).
    let mix = [
        ("threadward default, unhinted", Some((false, false))),
        ("threadward default, sleepers MayBlock", Some((false, true))),
        ("threadward Concurrency::Unlimited", Some((true, false))),
        (Kind::Tokio.name(), None),
        (Kind::Smol.name(), None),
    ]
    .into_iter()
    .map(|(name, tw)| {
        let mut rates = Vec::new();
        let mut peak = None;
        for _ in 0..mix_reps {
            let (r, p) = match tw {
                Some((unlimited, hinted)) => mix(mix_n, unlimited, hinted),
                None if name == Kind::Tokio.name() => mix_other(mix_n, Kind::Tokio),
                None => mix_other(mix_n, Kind::Smol),
            };
            rates.extend(r);
            peak = peak.max(p);
        }
        tick();
        MixRow {
            system: name.into(),
            kjobs_per_s: median(&rates).filter(|_| rates.len() == mix_reps),
            peak_threads: peak,
        }
    })
    .collect();
    Managed { gaps, blocks, mix }
}

/// Steps `run` reports through `tick`.
pub const STEPS: usize = 1 + 3 + 5;
