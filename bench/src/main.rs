//! threadward-bench: threadward side by side with the hardware floor, std
//! threads, tokio's `spawn_blocking`, smol's `blocking` and `threadpool`,
//! all in one process run.
//!
//! ```text
//! cargo run --release -p threadward-bench -- [--quick] [--json PATH] [--svg PATH]
//! ```
//!
//! Scenarios: (1) hand-off floor, (2) dispatch latency, (3) bursts of jobs
//! that block until all run, (4) stopping blocked jobs, (5) throughput of
//! tiny jobs, (6) 10 000 blocked jobs, (7) RSS per idle thread. Peers that
//! cannot take part (a thread cap, no way to stop a started job) are shown
//! as "capped" or "cannot", never as a number.

mod burst;
mod chart;
mod latency;
mod managed;
mod memory;
mod report;
mod stop;
mod systems;
mod util;

use std::path::PathBuf;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use latency::{PingPong, Subject};
use memory::MemKind;
use report::{
    BurstRow, Config, LatencyRow, Machine, MemRow, Results, ScaleRow, StopRow, ThroughputRow,
};
use stop::StopKind;
use systems::Kind;
use util::{median, Latency};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "threadward side by side with std, tokio, smol/blocking and threadpool"
)]
struct Args {
    /// Small sample counts and a 2 000-job scale case: the whole run takes under a minute.
    #[arg(long)]
    quick: bool,
    /// Write every result as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write every table as Markdown to this file (the README links
    /// `bench/RESULTS.md`, written this way).
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
    /// Write a chart (dispatch percentiles, burst and stop times) as SVG to this file.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Run only these scenarios (comma-separated): memory, dispatch, burst,
    /// stop, throughput, scale, managed.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    only: Vec<Scenario>,
}

/// A scenario that `--only` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Memory,
    Dispatch,
    Burst,
    Stop,
    Throughput,
    Scale,
    Managed,
}

/// Systems in the dispatch scenario, floors first.
const DISPATCH: [Subject; 10] = [
    Subject::Floor(PingPong::Park),
    Subject::Floor(PingPong::Condvar),
    Subject::System(Kind::ParkWorker),
    Subject::System(Kind::CondvarAfter),
    Subject::System(Kind::CondvarUnder),
    Subject::System(Kind::Threadward),
    Subject::System(Kind::Tokio),
    Subject::System(Kind::Smol),
    Subject::System(Kind::Threadpool),
    Subject::System(Kind::StdThread),
];

/// Systems in the burst and scale scenarios: jobs that block (on a std
/// condvar) until all run. threadward is shown hinted (`MayBlock`, what a
/// user who knows writes) and, in the burst, unhinted (the monitor finds
/// each blocked job).
const POOLS: [Kind; 7] = [
    Kind::ThreadwardMayBlock,
    Kind::Threadward,
    Kind::Tokio,
    Kind::TokioRaised,
    Kind::Smol,
    Kind::Threadpool,
    Kind::StdThread,
];

/// Systems in the throughput scenario (a new thread per job is left out:
/// it measures thread creation, see the burst scenario).
const THROUGHPUT: [Kind; 7] = [
    Kind::CondvarAfter,
    Kind::Threadward,
    Kind::ThreadwardExecute,
    Kind::ThreadwardUnlimited,
    Kind::Tokio,
    Kind::Smol,
    Kind::Threadpool,
];

const STOPS: [StopKind; 4] = [
    StopKind::Broadcast,
    StopKind::PoolShutdown,
    StopKind::PoolCancel,
    StopKind::StopAll,
];

const MEMS: [MemKind; 4] = [
    MemKind::Parked,
    MemKind::Parked2M,
    MemKind::Threadward,
    MemKind::Threadpool,
];

const BURST_SIZES: [usize; 2] = [100, 1000];
const STOP_N: usize = 1000;

fn config(quick: bool) -> Config {
    Config {
        quick,
        dispatch_samples: if quick { 400 } else { 3000 },
        reps: if quick { 2 } else { 5 },
        throughput_jobs: if quick { 20_000 } else { 200_000 },
        throughput_reps: if quick { 1 } else { 5 },
        metadata_jobs: if quick { 10_000 } else { 100_000 },
        scale_n: if quick { 2000 } else { 10_000 },
        mem_n: 1000,
    }
}

fn main() {
    let args = Args::parse();
    let cfg = config(args.quick);
    let rounds = if args.quick { 4 } else { 10 };
    let mem_reps = cfg.reps.min(3);
    let want = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let steps = [
        (Scenario::Dispatch, rounds),
        (Scenario::Burst, POOLS.len() * BURST_SIZES.len() * cfg.reps),
        (Scenario::Stop, STOPS.len() * cfg.reps),
        (
            Scenario::Throughput,
            THROUGHPUT.len() * 3 * cfg.throughput_reps,
        ),
        (Scenario::Scale, POOLS.len()),
        (Scenario::Managed, managed::STEPS),
        (Scenario::Memory, MEMS.len() * (mem_reps + 1)),
    ]
    .iter()
    .filter(|(s, _)| want(*s))
    .map(|(_, n)| n)
    .sum::<usize>();
    let pb = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );

    let mut results = Results {
        machine: Machine::detect(),
        config: cfg.clone(),
        dispatch: Vec::new(),
        burst: Vec::new(),
        stop: Vec::new(),
        throughput: Vec::new(),
        scale: Vec::new(),
        memory: Vec::new(),
        managed: None,
        targets: Vec::new(),
    };

    // 7 first, on a quiet process: RSS deltas are cleanest before the other
    // scenarios grew the allocator's arenas.
    if want(Scenario::Memory) {
        pb.set_message("memory: RSS per idle thread");
        warm_up();
        // Interleaved, after one discarded round, so allocator and kernel
        // warm-up effects do not land on whichever kind runs first.
        let mut per_kind = vec![Vec::new(); MEMS.len()];
        for rep in 0..=mem_reps {
            for (i, kind) in MEMS.into_iter().enumerate() {
                let v = memory::rss_per_idle(kind, cfg.mem_n);
                if rep > 0 {
                    per_kind[i].push(v);
                }
                pb.inc(1);
            }
        }
        for (kind, reps) in MEMS.into_iter().zip(per_kind) {
            results.memory.push(MemRow {
                system: kind.name().into(),
                n: cfg.mem_n,
                rss_per_thread_kib: median(&reps).unwrap_or(0.0),
            });
        }
    }

    if want(Scenario::Dispatch) {
        pb.set_message("floor + dispatch latency");
        let samples = latency::measure(&DISPATCH, cfg.dispatch_samples, rounds, || pb.inc(1));
        for (s, v) in DISPATCH.iter().zip(samples) {
            results.dispatch.push(LatencyRow {
                system: s.name().into(),
                short: s.short().into(),
                latency: Latency::from_ns(&v),
            });
        }
    }

    if want(Scenario::Burst) {
        for n in BURST_SIZES {
            for kind in POOLS {
                pb.set_message(format!("burst {n}: {}", kind.short()));
                let capped = kind.cap().filter(|&c| c < n);
                let (mut cold, mut warm) = (Vec::new(), Vec::new());
                for _ in 0..cfg.reps {
                    if capped.is_none() {
                        let r = burst::burst(kind, n);
                        cold.push(r.cold);
                        warm.push(r.warm);
                    }
                    pb.inc(1);
                }
                let timeout = cold.iter().chain(&warm).any(|r| *r == Err("timeout"));
                let ok =
                    |v: &[Result<f64, &str>]| v.iter().filter_map(|r| r.ok()).collect::<Vec<_>>();
                let (cold, warm) = (ok(&cold), ok(&warm));
                let note = match capped {
                    Some(c) => Some(format!("capped ({c})")),
                    None if timeout => Some("timeout".into()),
                    None if kind == Kind::Smol => Some(format!(
                        "cold: {} rep(s); smol's global pool keeps its threads",
                        cold.len()
                    )),
                    None => None,
                };
                results.burst.push(BurstRow {
                    system: kind.name().into(),
                    short: kind.short().into(),
                    n,
                    cold_ms: median(&cold).filter(|_| !timeout),
                    warm_ms: median(&warm).filter(|_| !timeout),
                    cold_reps: cold,
                    warm_reps: warm,
                    note,
                });
            }
        }
    }

    if want(Scenario::Stop) {
        for kind in STOPS {
            pb.set_message(format!("stop {STOP_N}: {}", kind.short()));
            let (mut obs, mut ret) = (Vec::new(), Vec::new());
            for _ in 0..cfg.reps {
                let r = stop::run(kind, STOP_N);
                obs.extend(r.observed);
                ret.extend(r.returned);
                pb.inc(1);
            }
            let complete = obs.len() == cfg.reps && ret.len() == cfg.reps;
            results.stop.push(StopRow {
                system: kind.name().into(),
                short: kind.short().into(),
                n: STOP_N,
                observed_ms: median(&obs).filter(|_| complete),
                returned_ms: median(&ret).filter(|_| complete),
                note: None,
            });
        }
        for kind in [Kind::Tokio, Kind::Smol, Kind::Threadpool] {
            results.stop.push(StopRow {
                system: kind.name().into(),
                short: kind.short().into(),
                n: STOP_N,
                observed_ms: None,
                returned_ms: None,
                note: Some("cannot".into()),
            });
        }
    }

    if want(Scenario::Throughput) {
        // Interleaved: each round runs every system once per measure, so a
        // noisy moment of the machine hits them all alike; medians of the
        // rounds are reported.
        let files = burst::MetadataFiles::create();
        let mut runs: Vec<[Vec<f64>; 3]> = vec![Default::default(); THROUGHPUT.len()];
        let mut peaks: Vec<Option<usize>> = vec![None; THROUGHPUT.len()];
        for _ in 0..cfg.throughput_reps {
            for (i, &kind) in THROUGHPUT.iter().enumerate() {
                pb.set_message(format!("throughput: {}", kind.short()));
                let works = [
                    (burst::Work::Tiny, cfg.throughput_jobs, 1),
                    (burst::Work::Tiny, cfg.throughput_jobs, 2),
                    (burst::Work::Metadata(&files), cfg.metadata_jobs, 1),
                ];
                for (m, (work, n, subs)) in works.into_iter().enumerate() {
                    let (r, p) = burst::throughput(kind, n, subs, work);
                    peaks[i] = peaks[i].max(p);
                    runs[i][m].extend(r);
                    pb.inc(1);
                }
            }
        }
        for (i, kind) in THROUGHPUT.into_iter().enumerate() {
            let med = |v: &Vec<f64>| median(v).filter(|_| v.len() == cfg.throughput_reps);
            let name = match kind {
                Kind::CondvarAfter => "ref: one worker, Mutex<VecDeque>+Condvar",
                Kind::Threadpool => "threadpool (2 threads)",
                k => k.name(),
            };
            results.throughput.push(ThroughputRow {
                system: name.into(),
                one_submitter: med(&runs[i][0]),
                two_submitters: med(&runs[i][1]),
                metadata: med(&runs[i][2]),
                peak_threads: peaks[i],
            });
        }
    }

    if want(Scenario::Scale) {
        let n = cfg.scale_n;
        // Unhinted blocking jobs are left to the burst scenario: 10 000 of
        // them would measure the monitor's tick, not the pool.
        for kind in POOLS.into_iter().filter(|&k| k != Kind::Threadward) {
            pb.set_message(format!("scale {n}: {}", kind.short()));
            let row = match kind.cap().filter(|&c| c < n) {
                Some(c) => ScaleRow {
                    system: kind.name().into(),
                    n,
                    reach_ms: None,
                    rss_per_thread_kib: None,
                    note: Some(format!("capped ({c})")),
                },
                None => {
                    let r = burst::scale(kind, n);
                    ScaleRow {
                        system: kind.name().into(),
                        n,
                        reach_ms: r.reach_ms,
                        rss_per_thread_kib: r.reach_ms.map(|_| r.rss_per_thread_kib),
                        note: None,
                    }
                }
            };
            results.scale.push(row);
            pb.inc(1);
        }
    }

    if want(Scenario::Managed) {
        pb.set_message("concurrency management");
        results.managed = Some(managed::run(args.quick, || pb.inc(1)));
    }

    pb.finish_and_clear();

    results.evaluate();
    if args.markdown.is_some() {
        report::capture_markdown();
    }
    results.print();
    if let (Some(path), Some(text)) = (&args.markdown, report::markdown()) {
        let cmd: Vec<String> = std::env::args().skip(1).collect();
        let doc = format!(
            "# threadward-bench results\n\nWritten by `cargo run --release -p threadward-bench -- {}` \
             on {}; not edited by hand. Run-to-run noise on a small VM is large: compare within one run.\n\n{text}",
            cmd.join(" "),
            std::process::Command::new("date").arg("-u").arg("+%Y-%m-%d").output().ok()
                .and_then(|o| String::from_utf8(o.stdout).ok()).map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        );
        if let Err(e) = std::fs::write(path, doc) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results).expect("serialise results");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        if let Err(e) = chart::write_svg(&results, path) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", path.display());
    }
}

/// Touches everything lazily initialised (threadward's registry, the
/// allocator's per-thread arenas) before the memory scenario measures.
fn warm_up() {
    let pool = threadward::Pool::builder()
        .name("warm")
        .min_idle(4)
        .build()
        .expect("pool");
    let jobs: Vec<_> = (0..8)
        .map(|_| pool.spawn(|_| vec![0u8; 4096].len()).expect("spawn"))
        .collect();
    for j in jobs {
        let _ = j.join();
    }
    pool.shutdown(std::time::Duration::from_secs(5));
    let hs: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| vec![0u8; 4096].len()))
        .collect();
    for h in hs {
        let _ = h.join();
    }
}
