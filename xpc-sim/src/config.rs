//! Simulation settings (the command line maps onto these).

use std::str::FromStr;
use std::time::Duration;

/// `--kill-partition P@MS`: stop partition P's heartbeat MS ms into the run.
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
        let (p, ms) = s
            .split_once('@')
            .ok_or_else(|| format!("expected P@MS, got {s:?}"))?;
        let partition = p
            .parse()
            .map_err(|_| format!("bad partition number {p:?}"))?;
        let ms: u64 = ms.parse().map_err(|_| format!("bad time {ms:?}"))?;
        Ok(KillAt {
            partition,
            at: Duration::from_millis(ms),
        })
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
    /// One callback in this many blocks for `long_block` instead.
    pub long_block_every: u64,
    /// The occasional long block.
    pub long_block: Duration,
    /// XPC `assigned_limit`: delivery threads per channel.
    pub assigned_limit: usize,
    /// XPC `idle_limit`: idle delivery threads kept per channel.
    pub idle_limit: usize,
    /// Delay between two discovered partitions.
    pub discovery_delay: Duration,
    /// Partitions whose heartbeat stops.
    pub kills: Vec<KillAt>,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            partitions: 8,
            channels: 2,
            messages: 10_000,
            duration: Duration::from_secs(10),
            callback_block: Duration::from_millis(20),
            long_block_every: 500,
            long_block: Duration::from_millis(300),
            assigned_limit: 64,
            idle_limit: 4,
            discovery_delay: Duration::from_millis(30),
            kills: Vec::new(),
            unload_at: None,
            fail_notifiers: false,
            cycles: 1,
            seed: 1,
            display: 0,
        }
    }
}

impl Config {
    /// Checks the settings; the error names the bad one.
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
            return Err("the assigned limit must be at least 1".into());
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
        Ok(())
    }
}
