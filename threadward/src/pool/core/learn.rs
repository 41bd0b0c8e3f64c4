//! Learned hints (README.md: "Learned hints"): per kind of job (its
//! closure's type), whether its recent runs blocked outside the library's
//! waits. A kind whose runs mostly blocked is run as `MayBlock` from its
//! next submit on, and its queued jobs are promoted at once; a kind that
//! stops blocking loses the mark.
//!
//! The rule, over a kind's last four observed runs: learned once at least
//! three blocked; unlearned once none did. A run of an unlearned kind
//! blocked if the monitor compensated it as blocked; a run of a learned
//! kind (which the monitor no longer watches: it runs uncounted) blocked
//! if it lasted `BLOCKED_RUN` or more. The table keeps at most `KINDS`
//! kinds; when full, the least recently seen one is evicted.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use super::state::WorkerNoHasher;

/// Kinds kept at once.
pub(crate) const KINDS: usize = 256;

/// A learned kind's run this long counts as blocked (two monitor ticks).
pub(crate) const BLOCKED_RUN: Duration = Duration::from_micros(200);

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
    fn last_four(&self) -> (u32, u32) {
        let n = u32::from(self.seen.min(4));
        let mask = (1u16 << n) as u8 - 1;
        ((self.history & mask).count_ones(), n)
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
        let (blocked, n) = k.last_four();
        let change = match k.learned {
            false if n == 4 && blocked >= 3 => {
                k.learned = true;
                Change::Learned
            }
            true if n == 4 && blocked == 0 => {
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
                let (blocked, runs) = k.last_four();
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

    #[test]
    fn three_blocked_of_four_learn_and_four_quick_unlearn() {
        let mut t = Learned::default();
        assert_eq!(t.record(key(7), true), Change::None);
        assert_eq!(t.record(key(7), false), Change::None);
        assert_eq!(t.record(key(7), true), Change::None);
        assert!(!t.is_learned(7));
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
            for _ in 0..4 {
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
