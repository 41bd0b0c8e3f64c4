//! Simulation settings (the command line maps onto these) and their checks.

use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The longest duration any flag takes (a day): longer ones are typos.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration written with its unit: `10s`, `500ms`, `250us`, `2m`,
/// `1h` (an integer and one unit, no spaces). Bare numbers, negative values,
/// fractions and anything over [`MAX_DURATION`] are refused with a message
/// saying why.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(xpc_sim::parse_duration("250us"), Ok(Duration::from_micros(250)));
/// assert!(xpc_sim::parse_duration("10").unwrap_err().contains("unit"));
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative; durations are 0 or more"));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a duration: write an integer and a unit, e.g. 10s, 500ms, 250us"
        ));
    }
    let per: Duration = match unit {
        "h" => Duration::from_secs(3600),
        "m" | "min" => Duration::from_secs(60),
        "s" => Duration::from_secs(1),
        "ms" => Duration::from_millis(1),
        "us" | "µs" => Duration::from_micros(1),
        "" => {
            return Err(format!(
                "{s:?} needs a unit: e.g. {t}s, {t}ms or {t}us"
            ))
        }
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use h, m, s, ms or us, with an integer: 10s, 500ms, 250us)"
            ))
        }
    };
    let too_long = || format!("{s:?} is longer than the maximum of 24h");
    let n: u32 = num.parse().map_err(|_| too_long())?;
    let d = per.checked_mul(n).ok_or_else(too_long)?;
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

fn parse_partition(p: &str) -> Result<usize, String> {
    p.parse().map_err(|_| format!("bad partition number {p:?}"))
}

/// `--kill-partition P@TIME`: stop partition P's heartbeat TIME into the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillAt {
    /// The partition (1..partitions; 0 is the local one).
    pub partition: usize,
    /// When, from the start of the load.
    pub at: Duration,
}

impl FromStr for KillAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, at) = s
            .split_once('@')
            .ok_or_else(|| format!("expected P@TIME (e.g. 2@300ms), got {s:?}"))?;
        Ok(KillAt {
            partition: parse_partition(p)?,
            at: parse_duration(at)?,
        })
    }
}

/// How an injected fault makes a channel misbehave (once, halfway through
/// its messages). Debug only: each must make the verdict fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The transport loses the message.
    Drop,
    /// The transport delivers the message twice.
    Repeat,
    /// The transport swaps the message with the next one.
    Reorder,
    /// The message is queued but its delivery job is never submitted.
    LoseJob,
    /// Two delivery jobs are submitted for one message.
    DoubleJob,
}

/// `--inject-fault KIND@P.C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// On partition P's ...
    pub partition: usize,
    /// ... channel C.
    pub channel: usize,
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "expected KIND@P.C (KIND: drop, repeat, reorder, lose-job, double-job), got {s:?}"
            )
        };
        let (kind, at) = s.split_once('@').ok_or_else(bad)?;
        let kind = match kind {
            "drop" => FaultKind::Drop,
            "repeat" => FaultKind::Repeat,
            "reorder" => FaultKind::Reorder,
            "lose-job" => FaultKind::LoseJob,
            "double-job" => FaultKind::DoubleJob,
            _ => return Err(bad()),
        };
        let (p, c) = at.split_once('.').ok_or_else(bad)?;
        Ok(Fault {
            kind,
            partition: parse_partition(p)?,
            channel: c.parse().map_err(|_| bad())?,
        })
    }
}

/// Where the remote partitions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// As threads inside this process (fast; for tests).
    #[default]
    Threads,
    /// Each as its own OS process, re-executed from the `xpc-sim` binary,
    /// talking over Unix-domain sockets (the program's default).
    Processes,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "threads" => Ok(Mode::Threads),
            "processes" => Ok(Mode::Processes),
            _ => Err(format!("{s:?}: expected threads or processes")),
        }
    }
}

/// How a delivery's user callback spends its time (`--callback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Callback {
    /// Blocks in a call the library cannot see (`std::thread::sleep`, as
    /// XPNET's code would block in the kernel): the pool must notice by
    /// itself. Not stop-aware, so each block is capped at
    /// [`FOREIGN_BLOCK_MAX`] and an unload waits it out (the channel's
    /// shutdown deadline is longer).
    #[default]
    Foreign,
    /// Blocks in the library's stop-aware wait (`Context::sleep`): the pool
    /// knows at once, and an unload stops it.
    Library,
    /// Computes (spins) for the block's time, checking its stop.
    Cpu,
}

/// The longest foreign block a callback makes (longer draws are cut):
/// below the channel's shutdown deadline, so an unload waits every one
/// out and leaves no straggler.
pub const FOREIGN_BLOCK_MAX: Duration = Duration::from_secs(1);

impl Callback {
    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Callback::Foreign => "foreign",
            Callback::Library => "library",
            Callback::Cpu => "cpu",
        }
    }
}

impl FromStr for Callback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "foreign" => Ok(Callback::Foreign),
            "library" => Ok(Callback::Library),
            "cpu" => Ok(Callback::Cpu),
            _ => Err(format!("{s:?}: expected foreign, library or cpu")),
        }
    }
}

/// Everything one simulation run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Partitions, including the local one (0).
    pub partitions: usize,
    /// Channels per (local, remote) partition pair.
    pub channels: usize,
    /// Messages each channel sends.
    pub messages: u64,
    /// How long the senders spread their messages over.
    pub duration: Duration,
    /// Mean time a user callback blocks.
    pub callback_block: Duration,
    /// How the callback blocks.
    pub callback: Callback,
    /// One callback in this many blocks for `long_block` instead.
    pub long_block_every: u64,
    /// The occasional long block.
    pub long_block: Duration,
    /// XPC `assigned_limit`: delivery threads per channel.
    pub assigned_limit: usize,
    /// XPC `idle_limit`: idle delivery threads kept per channel (the
    /// delivery pool's `max_idle`).
    pub idle_limit: usize,
    /// XPC message-queue entries per channel: messages queued or in a
    /// callback; a sender waits while all are taken.
    pub msg_entries: usize,
    /// XPC heartbeat interval (remote partitions beat this often).
    pub hb_interval: Duration,
    /// A partition whose heartbeat has not moved for this long is dead.
    pub hb_stale_after: Duration,
    /// Delay between two discovered partitions.
    pub discovery_delay: Duration,
    /// Where the remote partitions run.
    pub mode: Mode,
    /// The `xpc-sim` binary to re-execute for [`Mode::Processes`] (default:
    /// this executable).
    pub exe: Option<std::path::PathBuf>,
    /// Partitions killed: the heartbeat stops (threads) or SIGKILL
    /// (processes).
    pub kills: Vec<KillAt>,
    /// Killed partitions started again (processes only).
    pub restarts: Vec<KillAt>,
    /// Unload the module at this time even if the run is not over.
    pub unload_at: Option<Duration>,
    /// Make the optional notifier stages fail.
    pub fail_notifiers: bool,
    /// Load / run / unload this many times.
    pub cycles: usize,
    /// PRNG seed.
    pub seed: u64,
    /// Progress display: 0 none, 1 progress bar, 2 live registry view.
    pub display: u8,
    /// Debug: channel faults that the verdict must catch.
    pub faults: Vec<Fault>,
    /// Set (by a signal handler) to unload now and end the run.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Debug: an extra stage whose undo takes this long (tests a second
    /// Ctrl-C during a slow unload).
    pub slow_unload: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            partitions: 8,
            channels: 2,
            messages: 10_000,
            duration: Duration::from_secs(10),
            callback_block: Duration::from_millis(20),
            callback: Callback::Foreign,
            long_block_every: 500,
            long_block: Duration::from_millis(300),
            assigned_limit: 64,
            // XPNET passes 2 (of 32) to xpc_connect; at this load (~20 busy
            // callbacks per channel) 4 made the pools create 28 482 threads
            // for 140 000 messages, 16 makes it ~2 200.
            idle_limit: 16,
            msg_entries: 128,
            hb_interval: Duration::from_millis(10),
            hb_stale_after: Duration::from_millis(150),
            discovery_delay: Duration::from_millis(30),
            mode: Mode::Threads,
            exe: None,
            kills: Vec::new(),
            restarts: Vec::new(),
            unload_at: None,
            fail_notifiers: false,
            cycles: 1,
            seed: 1,
            display: 0,
            faults: Vec::new(),
            interrupt: None,
            slow_unload: None,
        }
    }
}

/// The most threads a threadward pool takes (`PoolBuilder::max_threads`).
const MAX_POOL_THREADS: usize = 1 << 22;

/// Threads the load itself runs besides the partitions' (heartbeat,
/// checker, discovery, monitor, the pool manager and pool monitor, main).
const FIXED_THREADS: usize = 8;

/// How many threads this process may still create: the least of
/// `RLIMIT_NPROC` (counted per user, so it is an upper bound),
/// `kernel.threads-max`, and what `vm.max_map_count` holds at about four
/// mappings a thread. `None` when none of them can be read.
pub fn thread_limit() -> Option<usize> {
    let read = |p: &str| -> Option<usize> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let nproc = rustix::process::getrlimit(rustix::process::Resource::Nproc)
        .current
        .and_then(|n| usize::try_from(n).ok());
    let threads_max = read("/proc/sys/kernel/threads-max");
    let maps = read("/proc/sys/vm/max_map_count").map(|m| m.saturating_sub(1024) / 4);
    [nproc, threads_max, maps].into_iter().flatten().min()
}

impl Config {
    /// Threads a load needs at least: per remote partition its contact
    /// thread and one delivery thread per channel, plus the fixed ones.
    pub fn threads_needed(&self) -> usize {
        // Processes: per channel a reader and a writer on each side, and
        // per partition a heartbeat reader (counted on this side; the
        // limit is per user, so the remote processes' count too).
        let per_channel = match self.mode {
            Mode::Threads => 1,
            Mode::Processes => 6,
        };
        self.partitions
            .saturating_sub(1)
            .saturating_mul(self.channels.saturating_mul(per_channel).saturating_add(2))
            .saturating_add(FIXED_THREADS)
    }

    /// Checks the settings before anything starts; the error names the bad
    /// one and what would be accepted.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions < 2 {
            return Err("--partitions must be at least 2 (the local one and a remote)".into());
        }
        if self.channels == 0 {
            return Err("--channels must be at least 1".into());
        }
        if self.cycles == 0 {
            return Err("--cycles must be at least 1".into());
        }
        if self.assigned_limit == 0 {
            return Err("--assigned-limit must be at least 1".into());
        }
        if self.msg_entries == 0 {
            return Err("--msg-entries must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0s".into());
        }
        if self.assigned_limit > MAX_POOL_THREADS {
            return Err(format!(
                "--assigned-limit {} is over the pool limit of {MAX_POOL_THREADS}",
                self.assigned_limit
            ));
        }
        if self.hb_interval < Duration::from_millis(1) {
            return Err("--hb-interval must be at least 1ms".into());
        }
        if self.hb_stale_after < self.hb_interval * 3 {
            return Err(format!(
                "--hb-stale-after ({:?}) must be at least 3 x --hb-interval ({:?}), or live partitions look dead",
                self.hb_stale_after, self.hb_interval
            ));
        }
        for k in &self.kills {
            if k.partition == 0 || k.partition >= self.partitions {
                return Err(format!(
                    "--kill-partition {}: partitions are 1..{}",
                    k.partition,
                    self.partitions - 1
                ));
            }
        }
        for r in &self.restarts {
            if self.mode != Mode::Processes {
                return Err("--restart-partition needs --mode processes".into());
            }
            if !self
                .kills
                .iter()
                .any(|k| k.partition == r.partition && k.at < r.at)
            {
                return Err(format!(
                    "--restart-partition {}@{:?}: that partition is not killed before then",
                    r.partition, r.at
                ));
            }
        }
        for f in &self.faults {
            if f.partition == 0 || f.partition >= self.partitions || f.channel >= self.channels {
                return Err(format!(
                    "--inject-fault: no channel {}.{} (partitions 1..{}, channels 0..{})",
                    f.partition,
                    f.channel,
                    self.partitions - 1,
                    self.channels - 1
                ));
            }
            if self.messages < 2 {
                return Err("--inject-fault needs at least 2 messages per channel".into());
            }
        }
        let need = self.threads_needed();
        if let Some(limit) = thread_limit() {
            if need > limit {
                return Err(format!(
                    "{} partitions x {} channels needs ~{need} threads at least; the limit here is {limit}",
                    self.partitions, self.channels
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit_convention() {
        let ok = [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("250us", Duration::from_micros(250)),
            ("2m", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
            ("24h", MAX_DURATION),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for (s, why) in [
            ("10", "needs a unit"),
            ("-5s", "negative"),
            ("1e300", "unknown unit"),
            ("1.5s", "unknown unit"),
            ("25h", "longer than"),
            ("99999999999999999999s", "longer than"),
            ("s", "not a duration"),
            ("", "not a duration"),
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert!("2@300".parse::<KillAt>().unwrap_err().contains("unit"));
        assert_eq!(
            "2@300ms".parse::<KillAt>(),
            Ok(KillAt {
                partition: 2,
                at: Duration::from_millis(300)
            })
        );
    }

    #[test]
    fn thread_needs_are_checked_against_the_limit() {
        let limit = thread_limit().expect("Linux exposes its thread limits");
        let cfg = Config {
            channels: limit,
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err();
        assert!(
            e.contains("needs ~") && e.contains(&format!("the limit here is {limit}")),
            "{e}"
        );
        let cfg = Config {
            partitions: usize::MAX,
            ..Config::default()
        };
        assert!(cfg.validate().unwrap_err().contains("needs ~"));
        Config::default().validate().unwrap();
    }
}
