//! One run: `cycles` × (load the module, send, drain or unload early,
//! unload), with a monitor thread sampling the registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use threadward::registry::{self, ThreadKind};
use threadward::{Stages, Stopper, Thread};

use crate::channel::{Channel, Totals};
use crate::config::Config;
use crate::report::{CycleReport, Report, StageTiming};

const HEARTBEAT: Duration = Duration::from_millis(10);
const CHECK_EVERY: Duration = Duration::from_millis(25);
const STALE_AFTER: Duration = Duration::from_millis(150);
const CHANNEL_DEADLINE: Duration = Duration::from_secs(2);

fn task_count() -> i64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as i64)
}

/// The reserved page: SAL hands XPC the same page on every load, so it is
/// created once per process and reused, never freed (not a leak).
struct Table {
    beats: Vec<AtomicU64>,
    killed: Vec<AtomicBool>,
}

fn reserved_page(partitions: usize) -> Arc<Table> {
    static PAGE: OnceLock<Mutex<Option<Arc<Table>>>> = OnceLock::new();
    let mut page = PAGE.get_or_init(Mutex::default).lock().unwrap();
    match &*page {
        Some(t) if t.beats.len() == partitions => {
            for k in &t.killed {
                k.store(false, Relaxed);
            }
            t.clone()
        }
        _ => {
            let t = Arc::new(Table {
                beats: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
                killed: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
            });
            *page = Some(t.clone());
            t
        }
    }
}

struct Contact {
    sender: Thread<()>,
    channels: Vec<Arc<Channel>>,
}

/// The channel registry: open contacts by partition.
struct Contacts {
    cfg: Config,
    totals: Arc<Totals>,
    open: Mutex<(bool, BTreeMap<usize, Contact>)>,
    died: Mutex<Vec<usize>>,
    discovered: AtomicUsize,
}

impl Contacts {
    /// Opens the channels to `p` and starts its contact (sender) thread.
    fn connect(&self, p: usize) {
        let mut channels = Vec::new();
        for c in 0..self.cfg.channels {
            let seed = self.cfg.seed ^ ((p as u64) << 32) ^ c as u64;
            match Channel::open(p, c, &self.cfg, seed, self.totals.clone()) {
                Ok(ch) => channels.push(ch),
                Err(e) => tracing::warn!(partition = p, error = %e, "cannot open channel"),
            }
        }
        let (chans, per, duration) = (channels.clone(), self.cfg.messages, self.cfg.duration);
        let sender = match threadward::spawn(format!("xpc-part-{p}"), move |cx| {
            let start = Instant::now();
            let mut sent = vec![0u64; chans.len()];
            while cx.sleep(Duration::from_millis(2)).is_ok() {
                let frac = (start.elapsed().as_secs_f64() / duration.as_secs_f64()).min(1.0);
                let target = (per as f64 * frac) as u64;
                for (ch, n) in chans.iter().zip(sent.iter_mut()) {
                    while *n < target {
                        if !ch.send() {
                            return;
                        }
                        *n += 1;
                    }
                }
                if sent.iter().all(|n| *n >= per) {
                    return;
                }
            }
        }) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "cannot start contact thread");
                self.close_channels(&channels);
                return;
            }
        };
        let contact = Contact { sender, channels };
        let mut open = self.open.lock().unwrap();
        if open.0 {
            open.1.insert(p, contact);
            self.discovered.fetch_add(1, Relaxed);
        } else {
            drop(open);
            self.teardown(contact);
        }
    }

    fn close_channels(&self, channels: &[Arc<Channel>]) {
        for ch in channels {
            ch.disconnect(CHANNEL_DEADLINE);
        }
    }

    fn teardown(&self, c: Contact) {
        let _ = c.sender.stop();
        self.close_channels(&c.channels);
    }

    /// The heartbeat checker found `p` stale.
    fn partition_died(&self, p: usize) {
        let contact = self.open.lock().unwrap().1.remove(&p);
        if let Some(c) = contact {
            tracing::warn!(
                partition = p,
                "heartbeat stale: partition declared dead, disconnecting"
            );
            self.died.lock().unwrap().push(p);
            self.teardown(c);
        }
    }

    fn close_all(&self) {
        let all = {
            let mut open = self.open.lock().unwrap();
            open.0 = false;
            std::mem::take(&mut open.1)
        };
        // Stop every sender first, then disconnect: teardown in parallel
        // would not buy much with channel pools already stopping jobs fast.
        for c in all.values() {
            c.sender.request_stop();
        }
        for (_, c) in all {
            self.teardown(c);
        }
    }

    fn partitions(&self) -> Vec<usize> {
        self.open.lock().unwrap().1.keys().copied().collect()
    }

    fn all_sent(&self) -> bool {
        self.open
            .lock()
            .unwrap()
            .1
            .values()
            .all(|c| c.sender.is_finished())
    }

    fn drained(&self) -> bool {
        self.open
            .lock()
            .unwrap()
            .1
            .values()
            .all(|c| c.channels.iter().all(|ch| ch.drained()))
    }
}

fn timed<T>(timings: &mut Vec<StageTiming>, stage: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    timings.push(StageTiming {
        stage: stage.to_owned(),
        micros: start.elapsed().as_micros() as u64,
        outcome: String::new(),
    });
    out
}

type SimError = Box<dyn std::error::Error + Send + Sync>;

/// One insmod / run / rmmod.
fn run_cycle(cfg: &Config, totals: &Arc<Totals>, baseline: i64) -> Result<CycleReport, SimError> {
    let mut rep = CycleReport::default();
    let mut init = Vec::new();
    let t0 = Instant::now();
    let mut stages = Stages::new("xpc");
    let n = cfg.partitions;

    let table = timed(&mut init, "reserved-page", || {
        stages.start("reserved-page", || {
            Ok::<_, SimError>((reserved_page(n), || { /* SAL keeps the page */ }))
        })
    })?;

    let (tb, kills) = (table.clone(), cfg.kills.clone());
    timed(&mut init, "heartbeat", || {
        stages.thread("heartbeat", Duration::from_secs(1), move || {
            threadward::spawn("xpc-heartbeat", move |cx| {
                while cx.sleep(HEARTBEAT).is_ok() {
                    for k in &kills {
                        if t0.elapsed() >= k.at && !tb.killed[k.partition].swap(true, Relaxed) {
                            tracing::warn!(
                                partition = k.partition,
                                "partition killed: heartbeat stops"
                            );
                        }
                    }
                    for (p, beat) in tb.beats.iter().enumerate().skip(1) {
                        if !tb.killed[p].load(Relaxed) {
                            beat.fetch_add(1, Relaxed);
                        }
                    }
                }
            })
        })
    })?;

    let contacts = Arc::new(Contacts {
        cfg: cfg.clone(),
        totals: totals.clone(),
        open: Mutex::new((true, BTreeMap::new())),
        died: Mutex::default(),
        discovered: AtomicUsize::new(0),
    });

    let (tb, cts) = (table.clone(), contacts.clone());
    timed(&mut init, "hb-checker", || {
        stages.thread("hb-checker", Duration::from_secs(5), move || {
            threadward::spawn("xpc-hb-checker", move |cx| {
                let mut last: Vec<(u64, Instant)> = tb
                    .beats
                    .iter()
                    .map(|b| (b.load(Relaxed), Instant::now()))
                    .collect();
                while cx.sleep(CHECK_EVERY).is_ok() {
                    for p in cts.partitions() {
                        let now = tb.beats[p].load(Relaxed);
                        if now != last[p].0 {
                            last[p] = (now, Instant::now());
                        } else if last[p].1.elapsed() > STALE_AFTER {
                            cts.partition_died(p);
                        }
                    }
                }
            })
        })
    })?;

    for notifier in ["reboot-notifier", "die-notifier"] {
        let fail = cfg.fail_notifiers;
        timed(&mut init, notifier, || {
            stages.start_optional(notifier, || {
                if fail {
                    Err(format!(
                        "register_{notifier}: -EBUSY (injected by --fail-notifiers)"
                    ))
                } else {
                    Ok(((), || {}))
                }
            })
        });
    }

    let cts = contacts.clone();
    timed(&mut init, "channel-registry", || {
        stages.start("channel-registry", move || {
            Ok::<_, SimError>(((), move || cts.close_all()))
        })
    })?;

    let (cts, delay) = (contacts.clone(), cfg.discovery_delay);
    let discovery: Stopper = timed(&mut init, "discovery", || {
        stages.thread("discovery", Duration::from_secs(5), move || {
            threadward::spawn("xpc-discovery", move |cx| {
                for p in 1..n {
                    if cx.sleep(delay).is_err() {
                        return;
                    }
                    cts.connect(p);
                }
            })
        })
    })?;
    rep.init = init;
    rep.degraded = stages.degraded().iter().map(|d| d.stage.clone()).collect();

    // Run until everything is sent and delivered, or until --unload-at.
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if cfg.unload_at.is_some_and(|u| t0.elapsed() >= u) {
            break;
        }
        if discovery.is_finished() && contacts.all_sent() && contacts.drained() {
            break;
        }
    }

    let report = stages.shutdown(Duration::from_secs(10));
    rep.exit = report
        .undone
        .iter()
        .map(|u| StageTiming {
            stage: u.name.clone(),
            micros: u.took.as_micros() as u64,
            outcome: u.outcome.to_string(),
        })
        .collect();
    rep.partitions_died = contacts.died.lock().unwrap().clone();
    rep.partitions_discovered = contacts.discovered.load(Relaxed);
    // Threads are joined by their stops; the kernel may take a moment to
    // drop an exited thread from /proc.
    let end = Instant::now() + Duration::from_secs(2);
    while task_count() > baseline && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    rep.leaked_threads = (task_count() - baseline).max(0);
    Ok(rep)
}

/// Samples peaks and draws the live display.
fn monitor(cfg: &Config, totals: Arc<Totals>) -> std::io::Result<Thread<(usize, usize)>> {
    let display = cfg.display;
    let expected =
        (cfg.partitions as u64 - 1) * cfg.channels as u64 * cfg.messages * cfg.cycles as u64;
    threadward::spawn("xpc-monitor", move |cx| {
        let bar = (display == 1).then(|| {
            let b = indicatif::ProgressBar::new(expected);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed:>4} [{bar:30}] {pos}/{len} delivered {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        let (mut peak_threads, mut peak_busy) = (0, 0);
        let mut last = (Instant::now(), 0u64);
        let mut tick = 0u64;
        while cx.sleep(Duration::from_millis(100)).is_ok() {
            let snap = registry::snapshot();
            let workers = snap
                .threads
                .iter()
                .filter(|t| matches!(t.kind, ThreadKind::PoolWorker { .. }))
                .count();
            let busy = snap.threads.iter().filter(|t| t.job.is_some()).count();
            peak_threads = peak_threads.max(snap.threads.len());
            peak_busy = peak_busy.max(busy);
            let delivered = totals.delivered.load(Relaxed);
            let rate = (delivered - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), delivered);
            if let Some(b) = &bar {
                b.set_position(delivered);
                b.set_message(format!(
                    "| {rate:>7.0}/s | threads: {} managed, {} delivery ({} busy)",
                    snap.threads.len() - workers,
                    workers,
                    busy
                ));
            }
            tick += 1;
            if display == 2 && tick.is_multiple_of(5) {
                let mut text = snap.to_string();
                if let Some(cut) = text.match_indices('\n').nth(30) {
                    text.truncate(cut.0);
                    text.push_str("\n  ...");
                }
                eprintln!(
                    "\x1b[2J\x1b[H{delivered} delivered, {rate:.0}/s, {} threads\n{text}",
                    snap.threads.len()
                );
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        (peak_threads, peak_busy)
    })
}

/// Runs the whole simulation and returns its report.
///
/// # Errors
///
/// A required stage failing (the OS refusing threads, say); the module was
/// unloaded before returning.
pub fn run(cfg: &Config) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    cfg.validate()?;
    let start = Instant::now();
    let totals = Arc::new(Totals::new());
    let mon = monitor(cfg, totals.clone())?;
    let baseline = task_count();
    let mut cycles = Vec::new();
    for _ in 0..cfg.cycles {
        cycles.push(run_cycle(cfg, &totals, baseline)?);
    }
    let (peak_threads, peak_busy_delivery) = mon.stop().unwrap_or_default();
    let hist = totals.latency_us.lock().unwrap().clone();
    Ok(Report {
        sent: totals.sent.load(Relaxed),
        delivered: totals.delivered.load(Relaxed),
        dropped_on_disconnect: totals.dropped.load(Relaxed),
        duplicates: totals.duplicates.load(Relaxed),
        out_of_order: totals.out_of_order.load(Relaxed),
        leaked_threads: cycles.iter().map(|c| c.leaked_threads).max().unwrap_or(0),
        stragglers: totals.stragglers.load(Relaxed),
        latency_p50_us: hist.value_at_quantile(0.5),
        latency_p99_us: hist.value_at_quantile(0.99),
        latency_max_us: hist.max(),
        threads_created: totals.threads_created.load(Relaxed),
        jobs_run: totals.jobs_run.load(Relaxed),
        peak_threads,
        peak_busy_delivery,
        seconds: start.elapsed().as_secs_f64(),
        cycles,
    })
}
