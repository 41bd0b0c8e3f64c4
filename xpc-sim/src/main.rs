//! `xpc-sim`: run the XPC-style simulation and print its report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use xpc_sim::{Config, KillAt};

/// An XPC-style partition/channel message system built on threadward.
///
/// Loads the module (stages), discovers partitions, sends messages over
/// per-channel delivery pools whose callbacks block, then drains and
/// unloads, and proves exactly-once in-order delivery with no thread left
/// behind. Exits 1 if that proof fails, 2 on bad flags.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Partitions, including the local one.
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Channels per partition pair.
    #[arg(long, default_value_t = 2)]
    channels: usize,
    /// Messages each channel sends.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Seconds the senders spread their messages over.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Mean microseconds a user callback blocks (exponential; 1 in 500
    /// blocks 300 ms).
    #[arg(long, default_value_t = 20_000)]
    callback_block_us: u64,
    /// Stop partition P's heartbeat MS milliseconds in (repeatable).
    #[arg(long, value_name = "P@MS")]
    kill_partition: Vec<KillAt>,
    /// Unload the module MS milliseconds in, whatever is still running.
    #[arg(long, value_name = "MS")]
    unload_at: Option<u64>,
    /// Make the reboot and die notifier stages fail (the run continues degraded).
    #[arg(long)]
    fail_notifiers: bool,
    /// Load, run and unload this many times.
    #[arg(long, default_value_t = 1)]
    cycles: usize,
    /// Write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<std::path::PathBuf>,
    /// PRNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Live view of the thread registry instead of the progress bar.
    #[arg(long)]
    top: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        eprintln!("error: --duration must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let cfg = Config {
        partitions: args.partitions,
        channels: args.channels,
        messages: args.messages,
        duration: Duration::from_secs_f64(args.duration),
        callback_block: Duration::from_micros(args.callback_block_us),
        kills: args.kill_partition,
        unload_at: args.unload_at.map(Duration::from_millis),
        fail_notifiers: args.fail_notifiers,
        cycles: args.cycles,
        seed: args.seed,
        display: if args.top { 2 } else { 1 },
        ..Config::default()
    };
    if let Err(e) = cfg.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    eprintln!(
        "xpc-sim: {} partitions, {} channels each, {} messages per channel over {:.1} s, {} cycle(s)",
        cfg.partitions, cfg.channels, cfg.messages, args.duration, cfg.cycles
    );
    let report = match xpc_sim::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{report}");
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
