//! One run: `cycles` × (load the module, send, drain or unload early,
//! unload), with a monitor thread sampling the registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use threadward::registry::{self, ThreadKind};
use threadward::{Stages, Stopper, Thread};

use crate::channel::{Channel, ChannelReport, Totals};
use crate::config::Config;
use crate::config::Mode;
use crate::procs::{Bases, Procs, Remote};
use crate::report::{CycleReport, Detection, Report, StageTiming};

const CHANNEL_DEADLINE: Duration = Duration::from_secs(2);
// An unload waits out every foreign block (they are not stop-aware).
const _: () = assert!(crate::config::FOREIGN_BLOCK_MAX.as_nanos() < CHANNEL_DEADLINE.as_nanos());

/// Peak resident memory of this process so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024)
}

fn interrupted(cfg: &Config) -> bool {
    cfg.interrupt.as_ref().is_some_and(|f| f.load(Relaxed))
}

fn task_count() -> i64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as i64)
}

/// This process's threads: (tid, name).
fn tasks() -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| {
            let tid = e.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            (tid, comm.trim().to_owned())
        })
        .collect()
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

enum Contact {
    /// A partition simulated by threads in this process.
    Local {
        sender: Thread<()>,
        channels: Vec<Arc<Channel>>,
    },
    /// A partition process.
    Remote(Remote),
}

/// The channel registry: open contacts by partition.
struct Contacts {
    cfg: Config,
    totals: Arc<Totals>,
    table: Arc<Table>,
    open: Mutex<(bool, BTreeMap<usize, Contact>)>,
    died: Mutex<Vec<usize>>,
    discovered: AtomicUsize,
    /// Processes mode: the partition processes.
    procs: Option<Arc<Procs>>,
    /// Processes mode: per partition, incarnations so far and where each
    /// channel's seqs continue.
    bases: Mutex<BTreeMap<usize, (usize, Vec<Bases>)>>,
    /// When each partition was killed, for the detection latency.
    killed_at: Mutex<BTreeMap<usize, Instant>>,
    detections: Mutex<Vec<Detection>>,
}

impl Contacts {
    fn insert(&self, p: usize, contact: Contact) {
        let mut open = self.open.lock().unwrap();
        if open.0 {
            open.1.insert(p, contact);
            self.discovered.fetch_add(1, Relaxed);
        } else {
            drop(open);
            self.teardown(p, contact);
        }
    }

    /// Processes mode: discovers partition `p`'s process and opens its
    /// channels, continuing each channel's seqs from its last incarnation.
    fn connect_remote(&self, cx: &threadward::Context, p: usize) {
        let (Some(procs), true) = (&self.procs, self.open.lock().unwrap().0) else {
            return;
        };
        let (inc, bases) = self
            .bases
            .lock()
            .unwrap()
            .get(&p)
            .cloned()
            .unwrap_or((0, vec![Bases::default(); self.cfg.channels]));
        let table = self.table.clone();
        let beat: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            table.beats[p].fetch_add(1, Relaxed);
        });
        // A fresh contact starts its staleness clock now.
        self.table.beats[p].fetch_add(1, Relaxed);
        let alive = || procs.alive(p);
        match Remote::connect(
            cx,
            &self.cfg,
            &procs.ns,
            p,
            inc,
            &bases,
            beat,
            &self.totals,
            &alive,
        ) {
            Ok(r) => self.insert(p, Contact::Remote(r)),
            Err((e, partial)) => {
                // Dead during discovery (killed), stopped by an unload, or
                // refused: fence it and account what was connected.
                let died = !procs.alive(p);
                procs.kill_and_reap(p);
                if let Some(r) = partial {
                    let next = r.died(&self.totals);
                    self.save_bases(p, next);
                }
                if died {
                    tracing::warn!(partition = p, error = %e, "partition died during discovery");
                    self.record_death(p);
                } else if !cx.should_stop() {
                    tracing::warn!(partition = p, error = %e, "cannot connect to the partition");
                    self.failed(format!("partition {p}: could not connect: {e}"));
                }
            }
        }
    }

    /// Opens the channels to `p` and starts its contact (sender) thread.
    fn connect(&self, p: usize) {
        let mut channels = Vec::new();
        for c in 0..self.cfg.channels {
            let seed = self.cfg.seed ^ ((p as u64) << 32) ^ c as u64;
            match Channel::open(p, c, &self.cfg, seed, self.totals.clone()) {
                Ok(ch) => channels.push(ch),
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "cannot open channel");
                    self.failed(format!("p{p}c{c}: could not open: {e}"));
                }
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
                        // Waits stop-aware while the channel's entries are
                        // all taken: a stop ends the sender at once.
                        if ch.send(cx).is_err() {
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
                self.failed(format!(
                    "partition {p}: contact thread could not start: {e}"
                ));
                self.close_channels(&channels);
                return;
            }
        };
        self.insert(p, Contact::Local { sender, channels });
    }

    /// Something the run needed failed: the verdict reports it.
    fn failed(&self, what: String) {
        self.totals.failures.lock().unwrap().push(what);
    }

    fn close_channels(&self, channels: &[Arc<Channel>]) {
        for ch in channels {
            ch.disconnect(CHANNEL_DEADLINE);
        }
    }

    fn save_bases(&self, p: usize, next: Vec<Bases>) {
        let mut b = self.bases.lock().unwrap();
        let inc = b.get(&p).map_or(0, |e| e.0);
        b.insert(p, (inc + 1, next));
    }

    fn teardown(&self, p: usize, c: Contact) {
        match c {
            Contact::Local { sender, channels } => {
                let _ = sender.stop();
                self.close_channels(&channels);
            }
            Contact::Remote(r) => {
                let procs = self.procs.as_ref().expect("remote contacts have processes");
                let killed = || procs.killed(p);
                let (next, died) = r.finish(&self.totals, Duration::from_secs(10), &killed);
                if died {
                    procs.kill_and_reap(p);
                }
                self.save_bases(p, next);
                if died {
                    self.record_death(p);
                }
            }
        }
    }

    /// The heartbeat checker found `p` stale.
    fn partition_died(&self, p: usize) {
        let contact = self.open.lock().unwrap().1.remove(&p);
        let Some(c) = contact else {
            return;
        };
        tracing::warn!(
            partition = p,
            "heartbeat stale: partition declared dead, disconnecting"
        );
        match c {
            Contact::Remote(r) => {
                // Fence first: once it is reaped, nothing more can arrive.
                if let Some(procs) = &self.procs {
                    procs.kill_and_reap(p);
                }
                let next = r.died(&self.totals);
                self.save_bases(p, next);
            }
            local => self.teardown(p, local),
        }
        // Last: a restart waits for the death to be listed, and must find
        // the bases its seqs continue from.
        self.record_death(p);
    }

    /// `p` is dead: listed, and how long after its kill that was found.
    fn record_death(&self, p: usize) {
        if let Some(at) = self.killed_at.lock().unwrap().remove(&p) {
            self.detections.lock().unwrap().push(Detection {
                partition: p,
                micros: at.elapsed().as_micros() as u64,
            });
        }
        self.died.lock().unwrap().push(p);
    }

    fn is_open(&self, p: usize) -> bool {
        self.open.lock().unwrap().1.contains_key(&p)
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
            if let Contact::Local { sender, .. } = c {
                sender.request_stop();
            }
        }
        for (p, c) in all {
            self.teardown(p, c);
        }
    }

    fn partitions(&self) -> Vec<usize> {
        self.open.lock().unwrap().1.keys().copied().collect()
    }

    fn all_sent(&self) -> bool {
        self.open.lock().unwrap().1.values().all(|c| match c {
            Contact::Local { sender, .. } => sender.is_finished(),
            Contact::Remote(_) => true,
        })
    }

    fn drained(&self) -> bool {
        self.open.lock().unwrap().1.values().all(|c| match c {
            Contact::Local { channels, .. } => channels.iter().all(|ch| ch.drained()),
            Contact::Remote(r) => r.done(self.cfg.messages),
        })
    }

    /// Whether any open channel has stalled (see `Channel::check_stall`).
    fn stalled(&self, bound: Duration) -> bool {
        let open = self.open.lock().unwrap();
        let mut any = false;
        for c in open.1.values() {
            match c {
                Contact::Local { channels, .. } => {
                    for ch in channels {
                        any |= ch.check_stall(bound);
                    }
                }
                Contact::Remote(r) => any |= r.check_stall(bound),
            }
        }
        any
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
fn run_cycle(
    cfg: &Config,
    totals: &Arc<Totals>,
    baseline: &[(String, String)],
) -> Result<CycleReport, SimError> {
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

    if let Some(d) = cfg.slow_unload {
        timed(&mut init, "debug-slow-unload", || {
            stages.start("debug-slow-unload", move || {
                Ok::<_, SimError>(((), move || std::thread::sleep(d)))
            })
        })?;
    }

    // Processes mode: the remote partitions are started now (they boot
    // in parallel, as independent OS instances would); the undo reaps them
    // after the channel registry's undo said BYE, killing any that hang.
    let procs = match cfg.mode {
        Mode::Threads => None,
        Mode::Processes => Some(timed(&mut init, "partition-procs", || {
            stages.start("partition-procs", || {
                let procs = Arc::new(Procs::new(cfg)?);
                for p in 1..n {
                    if let Err(e) = procs.spawn(p) {
                        procs.reap_all(Instant::now());
                        procs.close();
                        return Err(format!("cannot start partition {p}'s process: {e}").into());
                    }
                }
                let (pr, tot) = (procs.clone(), totals.clone());
                Ok::<_, SimError>((procs, move || {
                    let problems = pr.reap_all(Instant::now() + Duration::from_secs(5));
                    tot.failures.lock().unwrap().extend(problems);
                    pr.close();
                }))
            })
        })?),
    };

    let contacts = Arc::new(Contacts {
        cfg: cfg.clone(),
        totals: totals.clone(),
        table: table.clone(),
        open: Mutex::new((true, BTreeMap::new())),
        died: Mutex::default(),
        discovered: AtomicUsize::new(0),
        procs: procs.clone(),
        bases: Mutex::default(),
        killed_at: Mutex::default(),
        detections: Mutex::default(),
    });

    let (tb, kills, hb_interval) = (table.clone(), cfg.kills.clone(), cfg.hb_interval);
    match &procs {
        None => {
            timed(&mut init, "heartbeat", || {
                stages.thread("heartbeat", Duration::from_secs(1), move || {
                    threadward::spawn("xpc-heartbeat", move |cx| {
                        while cx.sleep(hb_interval).is_ok() {
                            for k in &kills {
                                if t0.elapsed() >= k.at
                                    && !tb.killed[k.partition].swap(true, Relaxed)
                                {
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
        }
        Some(procs) => {
            // The partitions beat themselves; this thread carries out
            // --kill-partition (SIGKILL) and --restart-partition.
            let (pr, cts, restarts) = (procs.clone(), contacts.clone(), cfg.restarts.clone());
            timed(&mut init, "partition-ctl", || {
                stages.thread("partition-ctl", Duration::from_secs(5), move || {
                    threadward::spawn("xpc-part-ctl", move |cx| {
                        let mut killed = vec![false; kills.len()];
                        let mut restarted = vec![false; restarts.len()];
                        while cx.sleep(Duration::from_millis(1)).is_ok() {
                            for (k, done) in kills.iter().zip(killed.iter_mut()) {
                                if !*done && t0.elapsed() >= k.at {
                                    *done = true;
                                    if pr.kill(k.partition) {
                                        tracing::warn!(
                                            partition = k.partition,
                                            "partition killed (SIGKILL)"
                                        );
                                        cts.killed_at
                                            .lock()
                                            .unwrap()
                                            .insert(k.partition, Instant::now());
                                    }
                                }
                            }
                            for (r, done) in restarts.iter().zip(restarted.iter_mut()) {
                                // Once its death has been declared.
                                let dead = cts.died.lock().unwrap().contains(&r.partition)
                                    && !cts.is_open(r.partition);
                                if !*done && t0.elapsed() >= r.at && dead {
                                    *done = true;
                                    tracing::warn!(partition = r.partition, "partition restarted");
                                    match pr.spawn(r.partition) {
                                        Ok(()) => cts.connect_remote(cx, r.partition),
                                        Err(e) => cts.failed(format!(
                                            "partition {}: could not restart: {e}",
                                            r.partition
                                        )),
                                    }
                                }
                            }
                        }
                    })
                })
            })?;
        }
    }

    let (tb, cts) = (table.clone(), contacts.clone());
    let stale_after = cfg.hb_stale_after;
    let check_every = stale_after / 6;
    timed(&mut init, "hb-checker", || {
        stages.thread("hb-checker", Duration::from_secs(5), move || {
            threadward::spawn("xpc-hb-checker", move |cx| {
                let mut last: Vec<(u64, Instant)> = tb
                    .beats
                    .iter()
                    .map(|b| (b.load(Relaxed), Instant::now()))
                    .collect();
                while cx.sleep(check_every).is_ok() {
                    for p in cts.partitions() {
                        let now = tb.beats[p].load(Relaxed);
                        if now != last[p].0 {
                            last[p] = (now, Instant::now());
                        } else if last[p].1.elapsed() > stale_after {
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
                    match cts.procs {
                        None => cts.connect(p),
                        Some(_) => cts.connect_remote(cx, p),
                    }
                }
            })
        })
    })?;
    rep.init = init;
    rep.degraded = stages.degraded().iter().map(|d| d.stage.clone()).collect();

    // Run until everything is sent and delivered, or until --unload-at or
    // a signal; a channel whose queued messages are not taken for the
    // stall bound (a lost delivery job) ends the wait too, so the drain is
    // bounded and the loss reported.
    let stall_bound = Duration::from_secs(2) + cfg.long_block * 2 + cfg.callback_block * 20;
    let mut last_progress = (totals.progress.load(Relaxed), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if interrupted(cfg) {
            rep.interrupted = true;
            break;
        }
        if cfg.unload_at.is_some_and(|u| t0.elapsed() >= u) {
            break;
        }
        if contacts.stalled(stall_bound) {
            break;
        }
        if discovery.is_finished() && contacts.all_sent() && contacts.drained() {
            break;
        }
        // Nothing moved for the stall bound while the run is not done: a
        // message that will never come (the verdict then says which).
        let now = totals.progress.load(Relaxed);
        if now != last_progress.0 {
            last_progress = (now, Instant::now());
        } else if discovery.is_finished()
            && contacts.all_sent()
            && last_progress.1.elapsed() > stall_bound
        {
            totals.failures.lock().unwrap().push(format!(
                "the run stopped progressing for {stall_bound:?} before every message was delivered"
            ));
            break;
        }
    }

    let unload = Instant::now();
    let report = stages.shutdown(Duration::from_secs(10));
    rep.unload_micros = unload.elapsed().as_micros() as u64;
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
    rep.detections = contacts.detections.lock().unwrap().clone();
    rep.processes_started = procs.as_ref().map_or(0, |p| p.started.load(Relaxed));
    rep.partitions_discovered = contacts.discovered.load(Relaxed);
    // Threads are joined by their stops, but a detached helper (a deadline
    // stop request's) may still be exiting, and one listing of
    // /proc/self/task can miss a thread that is being created or reaped
    // meanwhile (seen: the count read back at baseline, the next one
    // above). So the count must stay at the baseline for three reads in a
    // row; a thread still there after 2 s is a leak.
    let end = Instant::now() + Duration::from_secs(2);
    let (mut count, mut settled) = (task_count(), 0);
    while settled < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
        count = task_count();
        settled = if count <= baseline.len() as i64 {
            settled + 1
        } else {
            0
        };
    }
    rep.leaked_threads = (count - baseline.len() as i64).max(0);
    if rep.leaked_threads > 0 {
        rep.leaked_names = tasks()
            .into_iter()
            .filter(|t| !baseline.iter().any(|b| b.0 == t.0))
            .map(|(tid, name)| format!("{name} (tid {tid})"))
            .collect();
    }
    Ok(rep)
}

/// The terminal's size (columns, rows), if stdout is a terminal.
fn terminal_size() -> Option<(usize, usize)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then(|| (usize::from(ws.ws_col), usize::from(ws.ws_row)))
}

/// The `--top` view's lines: managed threads one per line, pool workers
/// one line per pool (counts by state), so every thread is accounted for.
fn top_lines(snap: &registry::Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pools: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for t in &snap.threads {
        match &t.kind {
            ThreadKind::PoolWorker { pool } => {
                *pools
                    .entry(pool)
                    .or_default()
                    .entry(t.state.to_string())
                    .or_default() += 1;
            }
            _ => lines.push(format!(
                "  {:<16} {:<20} {:>8.1?}",
                t.name,
                t.state.to_string(),
                t.in_state
            )),
        }
    }
    for (pool, states) in pools {
        let total: usize = states.values().sum();
        let by: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        lines.push(format!(
            "  pool {pool:<11} {total:>4} workers: {}",
            by.join(", ")
        ));
    }
    lines
}

/// One screen of the `--top` view: the header and page `page` (wrapping)
/// of `lines`, every line cut to `cols` columns, `rows` lines in all.
fn top_page(header: &str, lines: &[String], cols: usize, rows: usize, page: usize) -> String {
    let per_page = rows.saturating_sub(1).max(1);
    let pages = lines.len().div_ceil(per_page).max(1);
    let page = page % pages;
    let mut out: String = format!("{header} (page {}/{pages})", page + 1)
        .chars()
        .take(cols)
        .collect();
    out.push('\n');
    for l in lines.iter().skip(page * per_page).take(per_page) {
        out.extend(l.chars().take(cols));
        out.push('\n');
    }
    out
}

/// Samples peaks and draws the live display: a progress bar on stderr
/// (only when stderr is a terminal), or with `display == 2` the `--top`
/// view on stdout (the caller checks stdout is a terminal), fitted to its
/// width and paged through its height so every thread is reachable.
fn monitor(cfg: &Config, totals: Arc<Totals>) -> std::io::Result<Thread<(usize, usize, usize)>> {
    use std::io::IsTerminal;
    let display = cfg.display;
    let expected = (cfg.partitions as u64 - 1)
        .saturating_mul(cfg.channels as u64)
        .saturating_mul(cfg.messages)
        .saturating_mul(cfg.cycles as u64);
    let bar_wanted = display == 1 && std::io::stderr().is_terminal();
    threadward::spawn("xpc-monitor", move |cx| {
        let bar = bar_wanted.then(|| {
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
        let (mut peak_threads, mut peak_busy, mut peak_idle) = (0, 0, 0);
        let mut last = (Instant::now(), 0u64);
        let (mut tick, mut page) = (0u64, 0usize);
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
            // Idle delivery threads of any one channel (XPC's idle_limit).
            for p in snap.pools.iter().filter(|p| p.name.starts_with("xpc")) {
                peak_idle = peak_idle.max(p.stats.idle);
            }
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
                let (cols, rows) = terminal_size().unwrap_or((80, 24));
                let lines = top_lines(&snap);
                let header = format!(
                    "{delivered} delivered, {rate:.0}/s, {} threads",
                    snap.threads.len()
                );
                let out = format!(
                    "\x1b[2J\x1b[H{}",
                    top_page(&header, &lines, cols, rows, page)
                );
                page += 1;
                use std::io::Write;
                let mut so = std::io::stdout().lock();
                let _ = so.write_all(out.as_bytes());
                let _ = so.flush();
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        (peak_threads, peak_busy, peak_idle)
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
    let baseline = tasks();
    let mut cycles = Vec::new();
    for _ in 0..cfg.cycles {
        cycles.push(run_cycle(cfg, &totals, &baseline)?);
        if interrupted(cfg) {
            break;
        }
    }
    let (peak_threads, peak_busy_delivery, peak_idle_per_channel) = mon.stop().unwrap_or_default();
    let hist = totals.latency_us.lock().unwrap().clone();
    let failures = std::mem::take(&mut *totals.failures.lock().unwrap());
    let mut channels = std::mem::take(&mut *totals.channels.lock().unwrap());
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    let sum = |f: fn(&ChannelReport) -> u64| channels.iter().map(f).sum::<u64>();
    let seconds = start.elapsed().as_secs_f64();
    let delivered = sum(|c| c.received);
    Ok(Report {
        callback: cfg.callback.name().to_owned(),
        messages_per_s: delivered as f64 / seconds.max(1e-9),
        sent: sum(|c| c.sent),
        delivered,
        dropped_on_disconnect: sum(|c| c.dropped_on_disconnect),
        lost: sum(|c| c.lost),
        duplicates: sum(|c| c.duplicates),
        out_of_order: sum(|c| c.reordered),
        leaked_threads: cycles.iter().map(|c| c.leaked_threads).max().unwrap_or(0),
        stragglers: sum(|c| c.stragglers),
        latency_p50_us: hist.value_at_quantile(0.5),
        latency_p99_us: hist.value_at_quantile(0.99),
        latency_max_us: hist.max(),
        threads_created: sum(|c| c.threads_created),
        jobs_run: sum(|c| c.jobs_run),
        peak_threads,
        peak_busy_delivery,
        failures,
        peak_idle_per_channel,
        idle_limit: cfg.idle_limit,
        peak_entries: channels.iter().map(|c| c.peak_entries).max().unwrap_or(0),
        msg_entries: cfg.msg_entries,
        peak_rss_mib: peak_rss_mib(),
        interrupted: cycles.iter().any(|c| c.interrupted),
        seconds,
        cycles,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every thread is reachable in the `--top` view: workers are counted
    /// per pool, the rest listed, and paging through the terminal's height
    /// shows every line, each cut to its width.
    #[test]
    fn top_view_fits_the_terminal_and_reaches_every_thread() {
        let pool = threadward::Pool::builder()
            .name("toptest")
            .min_idle(3)
            .build()
            .unwrap();
        let t = threadward::spawn("top-managed", |cx| {
            while cx.sleep(Duration::from_secs(1)).is_ok() {}
        })
        .unwrap();
        let snap = registry::snapshot();
        let lines = top_lines(&snap);
        let workers: usize = snap
            .threads
            .iter()
            .filter(|t| matches!(&t.kind, ThreadKind::PoolWorker { pool } if &**pool == "toptest"))
            .count();
        assert!(workers >= 3);
        assert!(lines.iter().any(|l| l.contains("pool toptest") && l.contains(&format!("{workers:>4} workers"))), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("top-managed")), "{lines:?}");
        let many: Vec<String> = (0..50)
            .map(|i| format!("line {i:02} {}", "x".repeat(200)))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for page in 0..6 {
            let screen = top_page("head", &many, 40, 12, page);
            assert!(screen.lines().count() <= 12, "{screen}");
            assert!(screen.lines().all(|l| l.chars().count() <= 40), "{screen}");
            seen.extend(screen.lines().skip(1).map(|l| l[..7].to_owned()));
        }
        assert_eq!(seen.len(), 50, "every line on some page");
        drop(t);
        pool.shutdown(Duration::from_secs(5));
    }
}
