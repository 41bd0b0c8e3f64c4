//! Learned hints: a kind of job (a closure type) whose unhinted runs
//! block outside the library's waits is run as `MayBlock` from then on,
//! and loses the mark when it stops blocking; an explicit hint wins.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, eventually, SEC};
use threadward::{Concurrency, JobHint, Pool};

fn pool(name: &str) -> Pool {
    Pool::builder()
        .name(name)
        .concurrency(Concurrency::Limit(1))
        .min_idle(2)
        .build()
        .unwrap()
}

/// Runs `n` jobs of one kind at once (so the pool is saturated and the
/// monitor watches), each blocking in `std::thread::sleep` while `block`
/// is set, and waits for them.
fn batch(pool: &Pool, n: usize, block: &Arc<AtomicBool>) {
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let block = block.clone();
            pool.spawn(move |_| {
                if block.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .unwrap()
        })
        .collect();
    for j in jobs {
        j.join_timeout(30 * SEC).unwrap().unwrap();
    }
}

#[test]
fn a_kind_that_blocks_is_learned_and_unlearned() {
    bounded(60 * SEC, || {
        let pool = pool("learn");
        let block = Arc::new(AtomicBool::new(true));
        eventually(30 * SEC, "the blocking kind learned", || {
            batch(&pool, 8, &block);
            pool.stats().learned_kinds == 1
        });
        // The snapshot names it, with its recent runs.
        let snap = threadward::registry::snapshot();
        let info = snap.pools.iter().find(|p| &*p.name == "learn").unwrap();
        assert_eq!(info.kinds.len(), 1, "{snap}");
        let k = info.kinds[0];
        assert!(k.learned && k.recent_blocked >= 3, "{k:?}");
        assert!(k.name.contains("batch"), "the closure's type: {}", k.name);
        assert!(snap.to_string().contains("blocked (learned)"), "{snap}");
        // From now on its jobs run as MayBlock: a batch runs at once.
        let before = pool.stats().learned_runs;
        batch(&pool, 8, &block);
        let s = pool.stats();
        assert!(s.learned_runs >= before + 8, "{s:?}");
        // It stops blocking: quick runs take the mark away.
        block.store(false, Ordering::SeqCst);
        eventually(30 * SEC, "the kind unlearned", || {
            batch(&pool, 4, &block);
            pool.stats().learned_kinds == 0
        });
    });
}

#[test]
fn an_explicit_hint_wins_and_learning_can_be_switched_off() {
    bounded(60 * SEC, || {
        let pool = pool("hinted");
        for _ in 0..5 {
            let jobs: Vec<_> = (0..8)
                .map(|_| {
                    pool.spawn_hinted(JobHint::Cpu, |_| {
                        std::thread::sleep(Duration::from_millis(5))
                    })
                    .unwrap()
                })
                .collect();
            for j in jobs {
                j.join_timeout(30 * SEC).unwrap().unwrap();
            }
        }
        assert_eq!(pool.stats().learned_kinds, 0, "a Cpu hint teaches nothing");
        let off = Pool::builder()
            .name("nolearn")
            .concurrency(Concurrency::Limit(1))
            .learn_hints(false)
            .build()
            .unwrap();
        let block = Arc::new(AtomicBool::new(true));
        for _ in 0..5 {
            batch(&off, 8, &block);
        }
        let s = off.stats();
        assert_eq!((s.learned_kinds, s.learned_runs), (0, 0), "{s:?}");
        assert!(s.compensated > 0, "the monitor still compensates: {s:?}");
    });
}

/// A cold burst: the kind is learned from its first blocks (not its first
/// ends), and the rest of the burst is promoted while still queued. 50
/// jobs that each block (a std barrier) until all 50 run, unhinted.
#[test]
fn a_cold_burst_is_promoted_after_its_first_blocks() {
    bounded(60 * SEC, || {
        let pool = pool("burst");
        let barrier = Arc::new(std::sync::Barrier::new(50));
        let jobs: Vec<_> = (0..50)
            .map(|_| {
                let b = barrier.clone();
                pool.spawn(move |_| {
                    b.wait();
                })
                .unwrap()
            })
            .collect();
        for j in jobs {
            j.join_timeout(30 * SEC).unwrap().unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.learned_kinds, 1, "{s:?}");
        assert!(
            s.learned_runs >= 20,
            "most of the burst ran promoted: {s:?}"
        );
        assert!(
            s.compensated < 20,
            "the monitor found only the first few: {s:?}"
        );
    });
}

/// One closure type, two callbacks: named kinds (`Pool::spawn_kind`) are
/// learned apart. Only the blocking one is learned; the quick one's jobs
/// never run as learned `MayBlock` (by closure type they would share one
/// kind and both be marked, or neither).
#[test]
fn named_kinds_of_one_closure_type_are_learned_apart() {
    bounded(60 * SEC, || {
        let pool = pool("named");
        // Both callbacks go through this one closure type.
        let run = |pool: &Pool, n: usize| {
            let jobs: Vec<_> = (0..2 * n)
                .map(|i| {
                    let slow = i % 2 == 0;
                    let key = if slow { "slow" } else { "quick" };
                    pool.spawn_kind(key, move |_| {
                        if slow {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    })
                    .unwrap()
                })
                .collect();
            for j in jobs {
                j.join_timeout(30 * SEC).unwrap().unwrap();
            }
        };
        eventually(30 * SEC, "the slow kind learned", || {
            run(&pool, 8);
            pool.stats().learned_kinds == 1
        });
        let before = pool.stats().learned_runs;
        run(&pool, 8);
        let s = pool.stats();
        assert_eq!(s.learned_kinds, 1, "{s:?}");
        assert_eq!(
            s.learned_runs - before,
            8,
            "only the slow jobs run as learned: {s:?}"
        );
        // Only the blocking kind is kept; named kinds show as such.
        let snap = threadward::registry::snapshot();
        let info = snap.pools.iter().find(|p| &*p.name == "named").unwrap();
        assert_eq!(info.kinds.len(), 1, "{snap}");
        assert_eq!(info.kinds[0].name, "named");
    });
}
