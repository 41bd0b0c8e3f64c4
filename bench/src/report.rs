//! Results (serialised for `--json`), the terminal tables with ratios, and
//! the verdicts on the pool issue's targets.

use serde::Serialize;

use crate::util::{fmt_opt, ratio, Latency};

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine description from `/proc`.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|r| r.split(':').nth(1))
            .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned()),
        }
    }
}

/// Sample counts and sizes used by the run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `--quick` was given.
    pub quick: bool,
    /// Dispatch samples per system.
    pub dispatch_samples: usize,
    /// Repetitions of burst and stop (medians are reported).
    pub reps: usize,
    /// Jobs per throughput run.
    pub throughput_jobs: usize,
    /// Repetitions of each throughput run.
    pub throughput_reps: usize,
    /// `std::fs::metadata` jobs per run of that throughput measure.
    pub metadata_jobs: usize,
    /// Concurrently blocked jobs in the scale scenario.
    pub scale_n: usize,
    /// Threads created in the memory scenario.
    pub mem_n: usize,
}

/// One row of the dispatch-latency table.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    /// System name.
    pub system: String,
    /// Chart label.
    pub short: String,
    /// Percentiles.
    pub latency: Latency,
}

/// One row of the burst table (medians over repetitions, in ms).
#[derive(Debug, Clone, Serialize)]
pub struct BurstRow {
    /// System name.
    pub system: String,
    /// Chart label.
    pub short: String,
    /// Jobs in the burst.
    pub n: usize,
    /// Median cold time.
    pub cold_ms: Option<f64>,
    /// Median warm time.
    pub warm_ms: Option<f64>,
    /// Every cold repetition.
    pub cold_reps: Vec<f64>,
    /// Every warm repetition.
    pub warm_reps: Vec<f64>,
    /// Why there is no number ("capped (512)", "timeout").
    pub note: Option<String>,
}

/// One row of the stop table (medians, in ms).
#[derive(Debug, Clone, Serialize)]
pub struct StopRow {
    /// System name.
    pub system: String,
    /// Chart label.
    pub short: String,
    /// Blocked jobs stopped.
    pub n: usize,
    /// Until the last job observed the stop.
    pub observed_ms: Option<f64>,
    /// Until the stopping call returned.
    pub returned_ms: Option<f64>,
    /// Why there is no number ("cannot").
    pub note: Option<String>,
}

/// One row of the throughput table (median jobs/s).
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    /// System name.
    pub system: String,
    /// With one submitter thread.
    pub one_submitter: Option<f64>,
    /// With two submitter threads.
    pub two_submitters: Option<f64>,
    /// `std::fs::metadata` jobs, one submitter.
    pub metadata: Option<f64>,
    /// Most threads the system had during the runs, where it tells.
    pub peak_threads: Option<usize>,
}

/// One row of the scale table.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    /// System name.
    pub system: String,
    /// Concurrently blocked jobs.
    pub n: usize,
    /// ms until all were running.
    pub reach_ms: Option<f64>,
    /// RSS growth per blocked job, KiB.
    pub rss_per_thread_kib: Option<f64>,
    /// Why there is no number.
    pub note: Option<String>,
}

/// One row of the memory table.
#[derive(Debug, Clone, Serialize)]
pub struct MemRow {
    /// What was created.
    pub system: String,
    /// How many.
    pub n: usize,
    /// Median RSS growth per thread, KiB.
    pub rss_per_thread_kib: f64,
}

/// A target from the pool issue and whether this run meets it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// threadward's number.
    pub threadward: Option<f64>,
    /// The reference number.
    pub reference: Option<f64>,
    /// `threadward / reference`.
    pub ratio: Option<f64>,
    /// The largest ratio that passes (strictly below it when `strict`).
    pub limit: f64,
    /// Whether the limit is strict (`<` instead of `<=`).
    pub strict: bool,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

impl Target {
    /// Builds a target verdict from the two numbers.
    pub fn new(
        name: &str,
        tw: Option<f64>,
        reference: Option<f64>,
        limit: f64,
        strict: bool,
    ) -> Target {
        let ratio = match (tw, reference) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let met = ratio.map(|r| if strict { r < limit } else { r <= limit });
        Target {
            name: name.to_owned(),
            threadward: tw,
            reference,
            ratio,
            limit,
            strict,
            met,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How much it sampled.
    pub config: Config,
    /// Scenario 1 and 2.
    pub dispatch: Vec<LatencyRow>,
    /// Scenario 3.
    pub burst: Vec<BurstRow>,
    /// Scenario 4.
    pub stop: Vec<StopRow>,
    /// Scenario 5.
    pub throughput: Vec<ThroughputRow>,
    /// Scenario 6.
    pub scale: Vec<ScaleRow>,
    /// Scenario 7.
    pub memory: Vec<MemRow>,
    /// Scenario 8 (concurrency management).
    pub managed: Option<crate::managed::Managed>,
    /// The pool issue's targets.
    pub targets: Vec<Target>,
}

/// The Markdown rendering of what `print` shows, when `--markdown` asked
/// for it (the README links the file this becomes instead of copying
/// numbers by hand).
static MARKDOWN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Starts collecting the Markdown rendering.
pub fn capture_markdown() {
    *MARKDOWN.lock().unwrap() = Some(String::new());
}

/// The Markdown collected so far.
pub fn markdown() -> Option<String> {
    MARKDOWN.lock().unwrap().clone()
}

fn md(text: &str) {
    if let Some(m) = MARKDOWN.lock().unwrap().as_mut() {
        m.push_str(text);
    }
}

/// A line of text: printed, and kept as a Markdown line.
fn say(line: &str) {
    println!("{line}");
    md(&format!("{}\n\n", line.trim()));
}

/// Prints a table with a title; the first column left-aligned.
fn table(title: &str, head: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    md(&format!(
        "### {title}\n\n| {} |\n|{}\n",
        head.join(" | "),
        "---|".repeat(head.len())
    ));
    for r in rows {
        md(&format!("| {} |\n", r.join(" | ")));
    }
    md("\n");
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    println!("\n== {title}");
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<width$}", width = w[0])
                } else {
                    format!("{c:>width$}", width = w[i])
                }
            })
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Finds a row by system-name prefix.
fn find<T>(rows: &[T], name: impl Fn(&T) -> bool) -> Option<&T> {
    rows.iter().find(|r| name(r))
}

impl Results {
    /// Prints every table and the target verdicts to stdout.
    pub fn print(&self) {
        let m = &self.machine;
        say(&format!(
            "threadward-bench: {} cores, {}, Linux {}{}",
            m.cores,
            m.cpu,
            m.kernel,
            if self.config.quick { " (--quick)" } else { "" }
        ));
        self.print_dispatch();
        self.print_burst();
        self.print_stop();
        self.print_rest();
        self.print_managed();
        self.print_targets();
    }

    fn print_managed(&self) {
        let Some(m) = &self.managed else { return };
        let rows: Vec<Vec<String>> = m
            .gaps
            .iter()
            .map(|g| {
                vec![
                    format!("{} us", g.gap_us),
                    format!("{:.1}", g.floor.p50_us),
                    format!("{:.1}", g.condvar.p50_us),
                    format!("{:.1}", g.threadward.p50_us),
                    ratio(Some(g.threadward.p50_us), Some(g.floor.p50_us)),
                    format!("{:.1}", g.floor.p99_us),
                    format!("{:.1}", g.threadward.p99_us),
                    ratio(Some(g.threadward.p99_us), Some(g.floor.p99_us)),
                ]
            })
            .collect();
        table(
            "8a. Dispatch (submit -> first instruction) to an idle pool after an idle gap (us); floor: parked worker + unpark, one way",
            &[
                "gap",
                "floor p50",
                "condvar p50",
                "tw p50",
                "x floor",
                "floor p99",
                "tw p99",
                "x floor",
            ],
            &rows,
        );
        let rows: Vec<Vec<String>> = m
            .blocks
            .iter()
            .map(|b| {
                vec![
                    b.how.clone(),
                    format!("{:.1}", b.start.p50_us),
                    format!("{:.1}", b.start.p90_us),
                    format!("{:.1}", b.start.p99_us),
                    b.start.n.to_string(),
                ]
            })
            .collect();
        table(
            "8b. All `concurrency` jobs busy, one blocks, one queued: block -> queued job starts (us)",
            &["the running job blocks in", "p50", "p90", "p99", "samples"],
            &rows,
        );
        let rows: Vec<Vec<String>> = m
            .mix
            .iter()
            .map(|r| {
                vec![
                    r.system.clone(),
                    fmt_opt(r.kjobs_per_s, 1, "timeout"),
                    r.peak_threads.map_or("-".into(), |p| p.to_string()),
                ]
            })
            .collect();
        table(
            "8c. Mixed: 95% 1 us jobs + 5% 10 ms std::thread::sleep",
            &["pool", "k jobs/s", "peak threads"],
            &rows,
        );
    }

    fn print_dispatch(&self) {
        let floor = find(&self.dispatch, |r| r.short == "floor").map(|r| r.latency.p50_us);
        let tw = find(&self.dispatch, |r| r.short == "threadward").map(|r| r.latency.p50_us);
        let rows: Vec<Vec<String>> = self
            .dispatch
            .iter()
            .map(|r| {
                let l = r.latency;
                vec![
                    r.system.clone(),
                    format!("{:.1}", l.p50_us),
                    format!("{:.1}", l.p90_us),
                    format!("{:.1}", l.p99_us),
                    ratio(Some(l.p50_us), floor),
                    ratio(tw, Some(l.p50_us)),
                ]
            })
            .collect();
        table(
            &format!(
                "1-2. Hand-off floor and dispatch latency, submit -> first instruction on an idle warm pool ({} samples each, µs)",
                self.config.dispatch_samples
            ),
            &["system", "p50", "p90", "p99", "p50 x floor", "tw / this"],
            &rows,
        );
    }

    fn print_burst(&self) {
        for n in [100usize, 1000] {
            let rows: Vec<&BurstRow> = self.burst.iter().filter(|r| r.n == n).collect();
            let std_cold = rows
                .iter()
                .find(|r| r.short == "std/job")
                .and_then(|r| r.cold_ms);
            let tw = rows.iter().find(|r| r.short == "tw-mayblock");
            let (tw_cold, tw_warm) = (tw.and_then(|r| r.cold_ms), tw.and_then(|r| r.warm_ms));
            let note = |r: &BurstRow| r.note.clone().unwrap_or_else(|| "timeout".into());
            let out: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.system.clone(),
                        fmt_opt(r.cold_ms, 2, &note(r)),
                        fmt_opt(r.warm_ms, 2, &note(r)),
                        ratio(r.cold_ms, std_cold),
                        ratio(tw_cold, r.cold_ms),
                        ratio(tw_warm, r.warm_ms),
                    ]
                })
                .collect();
            table(
                &format!(
                    "3. Burst of {n} jobs blocking until all run: ms until all running (median of {})",
                    self.config.reps
                ),
                &["system", "cold", "warm", "cold x std/job", "tw/this cold", "tw/this warm"],
                &out,
            );
            for r in rows.iter().filter(|r| r.cold_ms.is_some()) {
                if let Some(note) = &r.note {
                    say(&format!("  note: {}: {note}", r.system));
                }
            }
        }
    }

    fn print_stop(&self) {
        let floor = find(&self.stop, |r| r.short == "broadcast");
        let (fo, fr) = (
            floor.and_then(|r| r.observed_ms),
            floor.and_then(|r| r.returned_ms),
        );
        let rows: Vec<Vec<String>> = self
            .stop
            .iter()
            .map(|r| {
                let note = r.note.clone().unwrap_or_else(|| "timeout".into());
                vec![
                    r.system.clone(),
                    fmt_opt(r.observed_ms, 2, &note),
                    fmt_opt(r.returned_ms, 2, &note),
                    ratio(r.observed_ms, fo),
                    ratio(r.returned_ms, fr),
                ]
            })
            .collect();
        let n = self.stop.first().map_or(0, |r| r.n);
        table(
            &format!(
                "4. Stop {n} running jobs blocked in a wait: ms from the request (median of {})",
                self.config.reps
            ),
            &[
                "system",
                "last observed",
                "call returned",
                "observed x floor",
                "returned x floor",
            ],
            &rows,
        );
    }

    fn print_rest(&self) {
        let tw = find(&self.throughput, |r| r.system.starts_with("threadward"));
        let rows: Vec<Vec<String>> = self
            .throughput
            .iter()
            .map(|r| {
                let k = |v: Option<f64>| fmt_opt(v.map(|x| x / 1000.0), 0, "timeout");
                vec![
                    r.system.clone(),
                    k(r.one_submitter),
                    k(r.two_submitters),
                    ratio(tw.and_then(|t| t.one_submitter), r.one_submitter),
                    ratio(tw.and_then(|t| t.two_submitters), r.two_submitters),
                    k(r.metadata),
                    ratio(tw.and_then(|t| t.metadata), r.metadata),
                    r.peak_threads.map_or_else(|| "?".into(), |p| p.to_string()),
                ]
            })
            .collect();
        table(
            &format!(
                "5. Throughput: {} tiny jobs and {} std::fs::metadata jobs, thousand jobs/s (median of {} interleaved rounds; tw = Pool::spawn; tw/this > 1 means threadward is faster)",
                self.config.throughput_jobs, self.config.metadata_jobs, self.config.throughput_reps
            ),
            &[
                "system",
                "tiny, 1 submitter",
                "tiny, 2 submitters",
                "tw/this 1",
                "tw/this 2",
                "metadata, 1 submitter",
                "tw/this",
                "peak threads",
            ],
            &rows,
        );

        let tw = find(&self.scale, |r| r.system.starts_with("threadward"));
        let rows: Vec<Vec<String>> = self
            .scale
            .iter()
            .map(|r| {
                let note = r.note.clone().unwrap_or_else(|| "timeout".into());
                vec![
                    r.system.clone(),
                    fmt_opt(r.reach_ms, 1, &note),
                    fmt_opt(r.rss_per_thread_kib, 1, &note),
                    ratio(tw.and_then(|t| t.reach_ms), r.reach_ms),
                ]
            })
            .collect();
        let n = self.scale.first().map_or(0, |r| r.n);
        table(
            &format!("6. Scale: {n} jobs blocked at once, cold (clock includes building the pool)"),
            &["system", "ms to all running", "RSS KiB/thread", "tw/this"],
            &rows,
        );

        let floor = self.memory.first().map(|r| r.rss_per_thread_kib);
        let rows: Vec<Vec<String>> = self
            .memory
            .iter()
            .map(|r| {
                vec![
                    r.system.clone(),
                    format!("{:.1}", r.rss_per_thread_kib),
                    ratio(Some(r.rss_per_thread_kib), floor),
                ]
            })
            .collect();
        let n = self.memory.first().map_or(0, |r| r.n);
        table(
            &format!(
                "7. Memory: RSS per idle thread, {n} threads (median of {})",
                self.config.reps.min(3)
            ),
            &["system", "KiB/thread", "x floor"],
            &rows,
        );
    }

    fn print_targets(&self) {
        let rows: Vec<Vec<String>> = self
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    fmt_opt(t.threadward, 2, "-"),
                    fmt_opt(t.reference, 2, "-"),
                    fmt_opt(t.ratio, 2, "-"),
                    format!("{}{:.2}", if t.strict { "<" } else { "<=" }, t.limit),
                    match t.met {
                        Some(true) => "met".into(),
                        Some(false) => "MISSED".into(),
                        None => "n/a".into(),
                    },
                ]
            })
            .collect();
        table(
            "Targets from the pool issue",
            &[
                "target",
                "threadward",
                "reference",
                "ratio",
                "limit",
                "verdict",
            ],
            &rows,
        );
    }

    /// Evaluates the pool issue's targets from the measured rows.
    pub fn evaluate(&mut self) {
        let p50 =
            |short: &str| find(&self.dispatch, |r| r.short == short).map(|r| r.latency.p50_us);
        let burst = |short: &str, cold: bool| {
            find(&self.burst, |r| r.short == short && r.n == 1000).and_then(|r| {
                if cold {
                    r.cold_ms
                } else {
                    r.warm_ms
                }
            })
        };
        let stop = |short: &str| find(&self.stop, |r| r.short == short).and_then(|r| r.observed_ms);
        let mem = |name: &str| {
            find(&self.memory, |r| r.system.starts_with(name)).map(|r| r.rss_per_thread_kib)
        };
        let mut managed_targets = Vec::new();
        // Measure 0: tiny jobs, 1 submitter; 1: 2 submitters; 2: metadata.
        let tput = |name: &str, m: usize| {
            find(&self.throughput, |r| r.system.starts_with(name))
                .and_then(|r| [r.one_submitter, r.two_submitters, r.metadata][m])
        };
        // Issue 19's targets: tw >= 0.8x a fixed pool on tiny jobs, 0.95x
        // on metadata jobs (a fixed pool / tw <= 1.25, <= 1.053).
        for (m, label, limit) in [
            (0, "tiny jobs, 1 submitter", 1.25),
            (1, "tiny jobs, 2 submitters", 1.25),
            (2, "fs::metadata jobs, 1 submitter", 1.0 / 0.95),
        ] {
            for sys in ["threadward Pool::spawn", "threadward Pool::execute"] {
                managed_targets.push(Target::new(
                    &format!(
                        "{label}: fixed ncpu pool / {} (tw >= {:.2}x)",
                        sys.trim_start_matches("threadward "),
                        1.0 / limit
                    ),
                    tput("threadpool", m),
                    tput(sys, m),
                    limit,
                    false,
                ));
            }
        }
        if let Some(m) = &self.managed {
            for g in &m.gaps {
                managed_targets.push(Target::new(
                    &format!("dispatch p50 after a {} us idle gap vs floor", g.gap_us),
                    Some(g.threadward.p50_us),
                    Some(g.floor.p50_us),
                    1.15,
                    false,
                ));
                managed_targets.push(Target::new(
                    &format!("dispatch p99 after a {} us idle gap vs floor p99", g.gap_us),
                    Some(g.threadward.p99_us),
                    Some(g.floor.p99_us),
                    1.3,
                    false,
                ));
            }
            let floor = m.gaps.first().map(|g| g.floor.p50_us);
            let block = |i: usize| m.blocks.get(i).map(|b| b.start.p50_us);
            managed_targets.push(Target::new(
                "blocked in a library wait: queued job starts, p50 vs floor",
                block(0),
                floor,
                2.0,
                false,
            ));
            managed_targets.push(Target::new(
                "blocked in std sleep, no hint: p50 vs 2 ms",
                block(1),
                Some(2000.0),
                1.0,
                false,
            ));
            managed_targets.push(Target::new(
                "blocked in std sleep inside cx.blocking: p50 vs floor",
                block(2),
                floor,
                2.0,
                false,
            ));
            let mix = |i: usize| m.mix.get(i);
            let rate = |i: usize| mix(i).and_then(|r| r.kjobs_per_s);
            let peak = |i: usize| mix(i).and_then(|r| r.peak_threads).map(|p| p as f64);
            managed_targets.push(Target::new(
                "mixed, unhinted: Unlimited / managed throughput (>= 0.8x)",
                rate(2),
                rate(0),
                1.25,
                false,
            ));
            managed_targets.push(Target::new(
                "mixed, unhinted: managed / Unlimited peak threads",
                peak(0),
                peak(2),
                0.5,
                false,
            ));
            managed_targets.push(Target::new(
                "mixed, unhinted: tokio spawn_blocking / managed throughput (>= 2x)",
                rate(3),
                rate(0),
                0.5,
                false,
            ));
            managed_targets.push(Target::new(
                "mixed, unhinted: smol blocking / managed throughput (>= 2x)",
                rate(4),
                rate(0),
                0.5,
                false,
            ));
            managed_targets.push(Target::new(
                "mixed, hinted: Unlimited / managed throughput (>= 1.0x)",
                rate(2),
                rate(1),
                1.0,
                false,
            ));
        }
        self.targets = vec![
            Target::new(
                "dispatch p50 vs hand-off floor (parked worker + unpark)",
                p50("threadward"),
                p50("floor"),
                1.25,
                false,
            ),
            Target::new(
                "dispatch p50 vs tokio spawn_blocking",
                p50("threadward"),
                p50("tokio"),
                0.5,
                true,
            ),
            Target::new(
                "cold burst 1000 vs std thread per job",
                burst("tw-mayblock", true),
                burst("std/job", true),
                1.1,
                false,
            ),
            Target::new(
                "warm burst 1000 vs pre-created threadpool",
                burst("tw-mayblock", false),
                burst("threadpool", false),
                1.0,
                false,
            ),
            Target::new(
                "stop 1000 blocked jobs (last observed) vs broadcast",
                stop("tw shutdown"),
                stop("broadcast"),
                1.3,
                false,
            ),
            Target::new(
                "RSS per idle worker vs parked std thread",
                mem("threadward"),
                mem("floor"),
                1.25,
                false,
            ),
        ];
        self.targets.extend(managed_targets);
    }
}
