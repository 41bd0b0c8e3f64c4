//! `xpc-sim`: run the XPC-style simulation and print its report.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use xpc_sim::{parse_duration, Callback, Config, Fault, KillAt, Mode};

/// A count flag: a non-negative integer, with a message that says so.
fn count<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    if s.trim().starts_with('-') {
        return Err(format!("{s:?} is negative; give a whole number, 0 or more"));
    }
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number in range"))
}

/// An XPC-style partition/channel message system built on threadward.
///
/// Loads the module (stages), discovers partitions, sends messages over
/// per-channel delivery pools whose callbacks block, then drains and
/// unloads, and proves from each channel's receiving end that every message
/// arrived exactly once and in order, with no thread left behind.
///
/// Durations take a unit: 10s, 500ms, 250us (also m, h).
///
/// Exit codes: 0 proof holds; 1 proof failed (the channel is named);
/// 2 bad flags; 3 could not run or write the report; 130/143 interrupted by
/// SIGINT/SIGTERM after a clean unload (a second signal exits at once).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Partitions, including the local one.
    #[arg(long, default_value = "8", value_parser = count::<usize>, allow_hyphen_values = true)]
    partitions: usize,
    /// Channels per partition pair.
    #[arg(long, default_value = "2", value_parser = count::<usize>, allow_hyphen_values = true)]
    channels: usize,
    /// Messages each channel sends.
    #[arg(long, default_value = "10000", value_parser = count::<u64>, allow_hyphen_values = true)]
    messages: u64,
    /// How long the senders spread their messages over.
    #[arg(long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    duration: Duration,
    /// Mean time a user callback blocks (exponential).
    #[arg(long, default_value = "20ms", value_parser = parse_duration, allow_hyphen_values = true)]
    callback_block: Duration,
    /// How the user callback spends that time: `foreign` blocks where the
    /// library cannot see it (std::thread::sleep, each block capped at 1s,
    /// waited out at unload), `library` in threadward's stop-aware wait,
    /// `cpu` computes.
    #[arg(long, default_value = "foreign")]
    callback: Callback,
    /// One callback in this many blocks --long-block instead.
    #[arg(long, default_value = "500", value_parser = count::<u64>, allow_hyphen_values = true)]
    long_block_every: u64,
    /// The occasional long block.
    #[arg(long, default_value = "300ms", value_parser = parse_duration, allow_hyphen_values = true)]
    long_block: Duration,
    /// XPC assigned_limit: delivery threads per channel at most.
    #[arg(long, default_value = "64", value_parser = count::<usize>, allow_hyphen_values = true)]
    assigned_limit: usize,
    /// XPC idle_limit: idle delivery threads a channel keeps; one beyond it
    /// exits at once.
    #[arg(long, default_value = "16", value_parser = count::<usize>, allow_hyphen_values = true)]
    idle_limit: usize,
    /// XPC message-queue entries per channel: messages queued or in a
    /// callback; the sender waits (stop-aware) while all are taken.
    #[arg(long, default_value = "128", value_parser = count::<usize>, allow_hyphen_values = true)]
    msg_entries: usize,
    /// XPC heartbeat interval (scaled down from XPC's seconds).
    #[arg(long, default_value = "10ms", value_parser = parse_duration, allow_hyphen_values = true)]
    hb_interval: Duration,
    /// A partition whose heartbeat has not moved for this long is dead.
    #[arg(long, default_value = "150ms", value_parser = parse_duration, allow_hyphen_values = true)]
    hb_stale_after: Duration,
    /// Where the remote partitions run: each its own OS process
    /// (`processes`), or threads in this one (`threads`, faster).
    #[arg(long, default_value = "processes")]
    mode: Mode,
    /// Kill partition P TIME into the run (repeatable): SIGKILL to its
    /// process (processes) or its heartbeat stops (threads).
    #[arg(long, value_name = "P@TIME")]
    kill_partition: Vec<KillAt>,
    /// Start a killed partition P again TIME into the run (processes
    /// mode; repeatable): it is rediscovered and its channels reconnect,
    /// their seqs continuing.
    #[arg(long, value_name = "P@TIME")]
    restart_partition: Vec<KillAt>,
    /// Unload the module TIME into the run, whatever is still running
    /// (0s unloads before discovery finds anything: nothing is tested).
    #[arg(long, value_name = "TIME", value_parser = parse_duration, allow_hyphen_values = true)]
    unload_at: Option<Duration>,
    /// Make the reboot and die notifier stages fail (the run continues degraded).
    #[arg(long)]
    fail_notifiers: bool,
    /// Load, run and unload this many times.
    #[arg(long, default_value = "1", value_parser = count::<usize>, allow_hyphen_values = true)]
    cycles: usize,
    /// Write the report as JSON here (checked before the run).
    #[arg(long, value_name = "PATH")]
    json: Option<std::path::PathBuf>,
    /// PRNG seed.
    #[arg(long, default_value = "1", value_parser = count::<u64>, allow_hyphen_values = true)]
    seed: u64,
    /// Live view of the thread registry instead of the progress bar (needs
    /// stdout to be a terminal).
    #[arg(long)]
    top: bool,
    /// Debug: make channel P.C misbehave once (drop, repeat, reorder,
    /// lose-job, double-job); the verdict must fail.
    #[arg(long, value_name = "KIND@P.C", hide = true)]
    inject_fault: Vec<Fault>,
    /// Internal: run as remote partition P (started by the local one).
    #[arg(long, value_name = "P", hide = true, requires_all = ["rendezvous", "parent_pid"])]
    role_partition: Option<usize>,
    /// Internal: the run's socket namespace.
    #[arg(long, hide = true)]
    rendezvous: Option<String>,
    /// Internal: the local partition's pid.
    #[arg(long, hide = true)]
    parent_pid: Option<u32>,
    /// Debug: a stage whose undo takes this long.
    #[arg(long, value_name = "TIME", value_parser = parse_duration, hide = true)]
    debug_slow_unload: Option<Duration>,
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// SIGINT/SIGTERM set `any` (and `term`); a second one exits at once.
fn handle_signals() -> std::io::Result<(Arc<AtomicBool>, Arc<AtomicBool>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let (any, term) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees `any` as the previous signal left it.
        flag::register_conditional_shutdown(sig, 128 + sig, any.clone())?;
        flag::register(sig, any.clone())?;
    }
    flag::register(SIGTERM, term.clone())?;
    Ok((any, term))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(p), Some(ns), Some(parent)) =
        (args.role_partition, &args.rendezvous, args.parent_pid)
    {
        let cfg = config(&args, None);
        let code = xpc_sim::run_partition(&cfg, p, ns, parent);
        return ExitCode::from(u8::try_from(code).unwrap_or(3));
    }
    if args.top && !std::io::stdout().is_terminal() {
        return usage_error("--top draws a live view and needs stdout to be a terminal");
    }
    let (interrupt, term) = match handle_signals() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot install the SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(3);
        }
    };
    let mut cfg = config(&args, Some(interrupt));
    cfg.exe = std::env::current_exe().ok();
    cfg.display = if args.top { 2 } else { 1 };
    if let Err(e) = cfg.validate() {
        return usage_error(e);
    }
    // Open the JSON file now: a bad path is a usage error before the run,
    // not a failed proof after it.
    let mut json = match &args.json {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some((path.clone(), f)),
            Err(e) => return usage_error(format!("--json {}: {e}", path.display())),
        },
        None => None,
    };
    eprintln!(
        "xpc-sim: {} partitions ({}), {} channels each, {} messages per channel over {:?}, {} cycle(s)",
        cfg.partitions,
        match cfg.mode {
            Mode::Processes => "remote ones as processes",
            Mode::Threads => "remote ones as threads",
        },
        cfg.channels,
        cfg.messages,
        cfg.duration,
        cfg.cycles
    );
    run(&cfg, &term, json.as_mut())
}

fn config(args: &Args, interrupt: Option<Arc<AtomicBool>>) -> Config {
    Config {
        partitions: args.partitions,
        channels: args.channels,
        messages: args.messages,
        duration: args.duration,
        callback_block: args.callback_block,
        callback: args.callback,
        long_block_every: args.long_block_every,
        long_block: args.long_block,
        assigned_limit: args.assigned_limit,
        idle_limit: args.idle_limit,
        msg_entries: args.msg_entries,
        hb_interval: args.hb_interval,
        hb_stale_after: args.hb_stale_after,
        kills: args.kill_partition.clone(),
        unload_at: args.unload_at,
        fail_notifiers: args.fail_notifiers,
        cycles: args.cycles,
        seed: args.seed,
        display: if args.top { 2 } else { 1 },
        faults: args.inject_fault.clone(),
        interrupt,
        slow_unload: args.debug_slow_unload,
        mode: args.mode,
        restarts: args.restart_partition.clone(),
        ..Config::default()
    }
}

fn run(
    cfg: &Config,
    term: &AtomicBool,
    json: Option<&mut (std::path::PathBuf, std::fs::File)>,
) -> ExitCode {
    let report = match xpc_sim::run(cfg) {
        Ok(r) => r,
        Err(e) => {
            // The error and its causes, each once.
            let mut msg = format!("error: the run could not start: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("{msg}");
            return ExitCode::from(3);
        }
    };
    // Not println!: a closed stdout (`xpc-sim | head`) is an error to
    // report, not a panic.
    if let Err(e) = writeln!(std::io::stdout(), "{report}") {
        eprintln!("error: cannot write the report to stdout: {e}");
        return ExitCode::from(3);
    }
    if let Some((path, file)) = json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.flush()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(3);
        }
    }
    if !report.ok() {
        ExitCode::from(1)
    } else if report.interrupted {
        eprintln!("xpc-sim: interrupted; unloaded cleanly");
        ExitCode::from(if term.load(Ordering::Relaxed) {
            143
        } else {
            130
        })
    } else {
        ExitCode::SUCCESS
    }
}
