//! Learned hints (README.md: "Learned hints"): per kind of job (its
//! closure's type), whether its recent runs blocked outside the library's
//! waits. A kind whose runs mostly blocked is run as `MayBlock` from its
//! next submit on, and its queued jobs are promoted at once; a kind that
//! stops blocking loses the mark.
//!
//! The rule: learned once at least `LEARN_AT` of the kind's last eight
//! observed runs blocked; unlearned once none of its last four did. A run
//! of an unlearned kind blocked if the monitor compensated it as blocked;
//! a run of a learned kind (which the monitor no longer watches: it runs
//! uncounted) blocked if its worker's probe saw it sleep (`RunProbe`, one
//! run in `PROBE_EVERY`), or, where the probe cannot read, if it lasted
//! `BLOCKED_RUN` or more. The table keeps at most `KINDS`
//! kinds; when full, the least recently seen one is evicted.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use super::slot::WorkerNoHasher;

/// Kinds kept at once.
pub(crate) const KINDS: usize = 256;

/// Blocked runs of the last eight that make a kind learned. Six, not a
/// bare majority: the monitor records blocks in bursts (the jobs that
/// hold every running place are found blocked in one look, while no quick
/// job can end), so with 5 % sleepers three of four recent records were
/// blocked often enough to mark a mostly quick kind, and each marking
/// promoted every queued job of it to a thread of its own.
pub(crate) const LEARN_AT: u32 = 6;

/// A learned kind's run this long counts as blocked where the probe
/// cannot read (two monitor ticks).
pub(crate) const BLOCKED_RUN: Duration = Duration::from_micros(200);

/// A worker probes one learned run in this many (`RunProbe`).
pub(crate) const PROBE_EVERY: u32 = 8;

/// Whether a learned run blocked, measured by its own worker: the
/// thread's voluntary context switches (`/proc/thread-self/status`) before
/// and after the run; one or more means it slept. Learned runs run
/// unwatched, and on a machine with more runnable threads than CPUs their
/// wall time says little (a 1 µs job preempted for 300 µs looked blocked,
/// and kept a quick kind learned for good). A read costs ~15 µs, so a
/// worker probes one learned run in `PROBE_EVERY` and the others teach
/// nothing. (The CPU clock cannot tell a sleep from a wait for a CPU, and
/// `schedstat`'s run-queue time stayed 0 across preemptions of a 1 µs
/// spin in a test on the development VM.)
pub(crate) struct RunProbe {
    switches: u64,
}

/// What a learned run's worker measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probed {
    /// Not probed: the run teaches nothing.
    Skipped,
    /// Probed: it blocked or not.
    Blocked(bool),
    /// The probe could not read: judge by the run's length.
    Unknown,
}

impl RunProbe {
    /// The thread's voluntary context switches so far.
    fn read() -> Option<u64> {
        #[cfg(any(loom, shuttle))]
        return None;
        #[cfg(not(any(loom, shuttle)))]
        {
            // Read into the stack: an allocation could wait for a malloc
            // arena's lock (a voluntary switch) with hundreds of workers.
            use std::io::Read;
            let mut buf = [0u8; 4096];
            let mut f = std::fs::File::open("/proc/thread-self/status").ok()?;
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return None,
                }
            }
            if n == buf.len() {
                return None; // cut short: the line may be cut too
            }
            parse_switches(&buf[..n])
        }
    }

    /// Starts measuring (`None` where the file cannot be read).
    pub(crate) fn start() -> Option<RunProbe> {
        Some(RunProbe {
            switches: Self::read()?,
        })
    }

    /// Whether the run slept since `start`.
    pub(crate) fn end(&self) -> Probed {
        match Self::read() {
            Some(n) => Probed::Blocked(n > self.switches),
            None => Probed::Unknown,
        }
    }
}

/// The `voluntary_ctxt_switches` line of a status file (bytes: a thread
/// name need not be UTF-8). Only a whole line counts.
fn parse_switches(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"voluntary_ctxt_switches:";
    let line = text
        .split_inclusive(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(KEY))?;
    let digits = line.strip_suffix(b"\n")?.trim_ascii();
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A job's kind: its id (a hash of its closure's type or of the key its
/// submitter named) and a name for the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KindKey {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
}

/// One kind's recent runs.
#[derive(Debug, Clone, Copy, Default)]
struct Kind {
    name: &'static str,
    /// The last runs, newest in bit 0: 1 = blocked.
    history: u8,
    /// How many runs `history` holds (at most 8).
    seen: u8,
    learned: bool,
    /// When it was last seen (the table's clock), for eviction.
    last: u64,
}

impl Kind {
    /// Of the last `n` runs kept (at most 8), how many blocked, and how
    /// many there are.
    fn last(&self, n: u8) -> (u32, u32) {
        let n = self.seen.min(n).min(8);
        let mask = ((1u16 << n) - 1) as u8;
        ((self.history & mask).count_ones(), u32::from(n))
    }
}

/// What recording a run changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    /// The kind is now run as `MayBlock`: promote its queued jobs.
    Learned,
    Unlearned,
}

/// The pool's table of kinds.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    kinds: HashMap<u64, Kind, BuildHasherDefault<WorkerNoHasher>>,
    clock: u64,
    /// Kinds learned now.
    pub(crate) learned: usize,
    /// Jobs run as learned `MayBlock`.
    pub(crate) runs: u64,
}

impl Learned {
    /// Whether no kind is kept (then nothing need be looked up).
    pub(crate) fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Whether jobs of `kind` are run as `MayBlock` now.
    pub(crate) fn is_learned(&self, kind: u64) -> bool {
        self.kinds.get(&kind).is_some_and(|k| k.learned)
    }

    /// Records a run of `kind`: whether it blocked.
    pub(crate) fn record(&mut self, key: KindKey, blocked: bool) -> Change {
        let kind = key.id;
        if !blocked && !self.kinds.contains_key(&kind) {
            // A kind that never blocked is not kept: a flood of quick
            // jobs costs one lookup per job, and no table entry.
            return Change::None;
        }
        self.clock += 1;
        if !self.kinds.contains_key(&kind) && self.kinds.len() >= KINDS {
            self.evict();
        }
        let clock = self.clock;
        let k = self.kinds.entry(kind).or_default();
        k.name = key.name;
        k.history = (k.history << 1) | u8::from(blocked);
        k.seen = k.seen.saturating_add(1).min(8);
        k.last = clock;
        let (blocked8, _) = k.last(8);
        let (blocked4, n4) = k.last(4);
        let change = match k.learned {
            false if blocked8 >= LEARN_AT => {
                k.learned = true;
                Change::Learned
            }
            true if n4 == 4 && blocked4 == 0 => {
                k.learned = false;
                Change::Unlearned
            }
            _ => Change::None,
        };
        match change {
            Change::Learned => self.learned += 1,
            Change::Unlearned => self.learned -= 1,
            Change::None => {}
        }
        change
    }

    /// Drops the least recently seen kind (a scan: only when the table is
    /// full and a new kind comes).
    fn evict(&mut self) {
        let Some((&oldest, k)) = self.kinds.iter().min_by_key(|(_, k)| k.last) else {
            return;
        };
        if k.learned {
            self.learned -= 1;
        }
        self.kinds.remove(&oldest);
    }

    /// The kinds kept, most recently seen first (for the snapshot).
    pub(crate) fn view(&self) -> Vec<crate::pool::stats::JobKind> {
        let mut kinds: Vec<(u64, crate::pool::stats::JobKind)> = self
            .kinds
            .iter()
            .map(|(&id, k)| {
                let (blocked, runs) = k.last(8);
                let kind = crate::pool::stats::JobKind {
                    name: k.name,
                    id,
                    recent_runs: runs,
                    recent_blocked: blocked,
                    learned: k.learned,
                };
                (k.last, kind)
            })
            .collect();
        kinds.sort_by_key(|(last, _)| std::cmp::Reverse(*last));
        kinds.into_iter().map(|(_, k)| k).collect()
    }

    /// Kinds in the table.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kinds.len()
    }

    /// The identity of the counts, for `check_invariants`: `learned`
    /// counts the learned kinds (a walk: models only).
    #[cfg(any(loom, shuttle))]
    pub(crate) fn check(&self) {
        assert_eq!(
            self.kinds.values().filter(|k| k.learned).count(),
            self.learned,
            "learned kinds counted"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64) -> KindKey {
        KindKey { id, name: "test" }
    }

    /// The probe tells a sleep from computing.
    #[test]
    fn the_run_probe_tells_sleep_from_work() {
        let status = b"Name:\t\xffx\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t9\n";
        assert_eq!(parse_switches(status), Some(7));
        assert_eq!(parse_switches(b"nonvoluntary_ctxt_switches:\t9\n"), None);
        // A line cut by the buffer's end does not count.
        assert_eq!(parse_switches(b"voluntary_ctxt_switches:\t12"), None);
        let p = RunProbe::start().expect("status readable");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(p.end(), Probed::Blocked(true));
        let p = RunProbe::start().unwrap();
        let end = std::time::Instant::now() + Duration::from_millis(2);
        while std::time::Instant::now() < end {
            std::hint::spin_loop();
        }
        assert_eq!(
            p.end(),
            Probed::Blocked(false),
            "2 ms of spinning did not sleep"
        );
    }

    #[test]
    fn six_blocked_of_eight_learn_and_four_quick_unlearn() {
        let mut t = Learned::default();
        // Blocks in a burst of five among quick runs: not learned.
        for b in [true, true, true, true, true, false, false] {
            assert_eq!(t.record(key(7), b), Change::None);
        }
        assert!(!t.is_learned(7));
        // The sixth block of the last eight learns it.
        assert_eq!(t.record(key(7), true), Change::Learned);
        assert!(t.is_learned(7));
        assert_eq!(t.learned, 1);
        for _ in 0..3 {
            assert_eq!(t.record(key(7), false), Change::None);
        }
        assert_eq!(t.record(key(7), false), Change::Unlearned);
        assert_eq!(t.learned, 0);
    }

    /// The table stays bounded under 100 000 distinct kinds, and its count
    /// of learned kinds stays true through evictions.
    #[test]
    fn the_table_is_bounded_under_100_000_kinds() {
        let mut t = Learned::default();
        for kind in 0..100_000u64 {
            for _ in 0..LEARN_AT {
                t.record(key(kind), true);
            }
            assert!(t.len() <= KINDS);
        }
        assert_eq!(t.len(), KINDS);
        assert_eq!(t.learned, t.kinds.values().filter(|k| k.learned).count());
        // The most recent kinds are the ones kept.
        assert!(t.is_learned(99_999));
        assert!(!t.is_learned(0));
    }
}
