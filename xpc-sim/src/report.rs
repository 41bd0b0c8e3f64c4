//! The final report (terminal and `--json`).

use std::fmt;

use serde::Serialize;

use crate::channel::ChannelReport;

/// Timing of one stage of one load.
#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    /// Stage name.
    pub stage: String,
    /// Microseconds.
    pub micros: u64,
    /// How its undo went (exit timings only).
    pub outcome: String,
}

/// A killed partition found dead (by the heartbeat checker, by discovery,
/// or at the unload when it was killed just before).
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// The partition.
    pub partition: usize,
    /// From the SIGKILL to the declaration, microseconds.
    pub micros: u64,
}

/// One load/run/unload cycle.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CycleReport {
    /// Init, in start order.
    pub init: Vec<StageTiming>,
    /// Exit, in undo order.
    pub exit: Vec<StageTiming>,
    /// Optional stages that failed.
    pub degraded: Vec<String>,
    /// Partitions declared dead by the heartbeat checker.
    pub partitions_died: Vec<usize>,
    /// Partitions discovered before the unload (restarts count again).
    pub partitions_discovered: usize,
    /// Processes mode: how long each kill took to be detected.
    pub detections: Vec<Detection>,
    /// Processes mode: partition processes started (restarts included).
    pub processes_started: u64,
    /// OS threads above the baseline after the unload.
    pub leaked_threads: i64,
    /// Their names, if any.
    pub leaked_names: Vec<String>,
    /// How long the unload (every stage's undo) took.
    pub unload_micros: u64,
    /// Ended early by SIGINT/SIGTERM.
    pub interrupted: bool,
}

/// Everything a run proves.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// How the delivery callbacks blocked (`--callback`).
    pub callback: String,
    /// Messages delivered per second of the whole run (load to unload).
    pub messages_per_s: f64,
    /// Messages queued by senders.
    pub sent: u64,
    /// Messages handed to the user callback.
    pub delivered: u64,
    /// Messages still queued when their channel disconnected.
    pub dropped_on_disconnect: u64,
    /// Sent, never received, not dropped on disconnect.
    pub lost: u64,
    /// Messages received a second time.
    pub duplicates: u64,
    /// Messages received after a later one of their channel.
    pub out_of_order: u64,
    /// OS threads above the baseline after the last unload.
    pub leaked_threads: i64,
    /// Pool workers that did not stop before their deadline.
    pub stragglers: u64,
    /// Delivery latency (send → callback), microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile.
    pub latency_p99_us: u64,
    /// Maximum.
    pub latency_max_us: u64,
    /// Delivery threads created, over all channel pools.
    pub threads_created: u64,
    /// Delivery jobs run, over all channel pools.
    pub jobs_run: u64,
    /// Most managed threads alive at once (sampled).
    pub peak_threads: usize,
    /// Most delivery threads busy at once, over all channels (sampled).
    pub peak_busy_delivery: usize,
    /// Channels or contact threads that could not start.
    pub failures: Vec<String>,
    /// Most idle delivery threads one channel kept (sampled every 100 ms).
    pub peak_idle_per_channel: usize,
    /// The bound on them (`--idle-limit`, the pools' `max_idle`).
    pub idle_limit: usize,
    /// Most message-queue entries taken at once on one channel.
    pub peak_entries: usize,
    /// The bound on them (`--msg-entries`).
    pub msg_entries: usize,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: u64,
    /// Ended early by SIGINT/SIGTERM (after a clean unload).
    pub interrupted: bool,
    /// Seconds the whole run took.
    pub seconds: f64,
    /// Per cycle.
    pub cycles: Vec<CycleReport>,
    /// Per channel (and cycle), in name order.
    pub channels: Vec<ChannelReport>,
}

impl Report {
    /// The run's verdict: on every channel, every message its sender logged
    /// was received exactly once and in order or dropped on disconnect, the
    /// pool's counts agree, and no thread is left behind.
    pub fn ok(&self) -> bool {
        self.problems().is_empty()
    }

    /// What went wrong, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self.channels.iter().flat_map(|c| c.problems()).collect();
        p.extend(self.failures.iter().cloned());
        if self.peak_entries > self.msg_entries {
            p.push(format!(
                "a channel held {} entries, over its bound of {}",
                self.peak_entries, self.msg_entries
            ));
        }
        if self.peak_idle_per_channel > self.idle_limit {
            p.push(format!(
                "a channel kept {} idle delivery threads, over its idle limit of {}",
                self.peak_idle_per_channel, self.idle_limit
            ));
        }
        if self.leaked_threads > 0 {
            let names: Vec<&String> = self.cycles.iter().flat_map(|c| &c.leaked_names).collect();
            p.push(format!("{} threads leaked: {names:?}", self.leaked_threads));
        }
        p
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "xpc-sim report ({:.1} s, {} callbacks, {:.0} messages/s)",
            self.seconds, self.callback, self.messages_per_s
        )?;
        writeln!(f, "  messages   sent {}  received {}  dropped on disconnect {}  lost {}  duplicates {}  out of order {}",
            self.sent, self.delivered, self.dropped_on_disconnect, self.lost, self.duplicates, self.out_of_order)?;
        writeln!(
            f,
            "  latency    p50 {} us  p99 {} us  max {} us  (send -> callback)",
            self.latency_p50_us, self.latency_p99_us, self.latency_max_us
        )?;
        let reused = self.jobs_run.saturating_sub(self.threads_created);
        writeln!(f, "  threads    delivery threads created {}  for {} jobs ({} runs on reused threads)  peak managed threads {}  peak busy delivery threads {}  (this process)",
            self.threads_created, self.jobs_run, reused, self.peak_threads, self.peak_busy_delivery)?;
        writeln!(
            f,
            "  bounds     peak queue entries {} of {}  peak idle threads {} of {}  peak memory {} MiB  stragglers {}  leaked threads {}",
            self.peak_entries, self.msg_entries, self.peak_idle_per_channel, self.idle_limit, self.peak_rss_mib, self.stragglers, self.leaked_threads
        )?;
        for (i, c) in self.cycles.iter().enumerate() {
            let procs = if c.processes_started > 0 {
                format!(" ({} processes started)", c.processes_started)
            } else {
                String::new()
            };
            writeln!(f, "  cycle {}: {} partitions discovered{procs}, died: {:?}, degraded: {:?}, unload {:.1} ms{}, leaked threads {}",
                i + 1, c.partitions_discovered, c.partitions_died, c.degraded, c.unload_micros as f64 / 1000.0,
                if c.interrupted { " (interrupted)" } else { "" }, c.leaked_threads)?;
            let init: Vec<String> = c
                .init
                .iter()
                .map(|s| format!("{} {}us", s.stage, s.micros))
                .collect();
            writeln!(f, "    init  {}", init.join(", "))?;
            let exit: Vec<String> = c
                .exit
                .iter()
                .map(|s| format!("{} {}us ({})", s.stage, s.micros, s.outcome))
                .collect();
            writeln!(f, "    exit  {}", exit.join(", "))?;
            if !c.detections.is_empty() {
                let d: Vec<String> = c
                    .detections
                    .iter()
                    .map(|d| {
                        format!(
                            "partition {} in {:.0} ms",
                            d.partition,
                            d.micros as f64 / 1000.0
                        )
                    })
                    .collect();
                writeln!(f, "    kills detected: {}", d.join(", "))?;
            }
        }
        let problems = self.problems();
        if problems.is_empty() && self.cycles.iter().all(|c| c.partitions_discovered == 0) {
            write!(f, "  verdict    OK, but nothing was tested: the module unloaded before discovery found a partition (no channel opened, nothing sent)")
        } else if problems.is_empty() && self.sent == 0 {
            write!(f, "  verdict    OK, but nothing was tested: no message was sent before the unload (partitions died or the senders had not started)")
        } else if problems.is_empty() {
            write!(f, "  verdict    OK: every channel's receiver got each message its sender logged exactly once and in order (or it was dropped on disconnect), pool counts agree, no thread left behind")
        } else {
            write!(f, "  verdict    FAILED: {}", problems.join("; "))
        }
    }
}
