//! Criterion micro-benchmarks of threadward's own hot paths (no peers):
//! dispatch + join on a warm pool, a stop request that runs one callback,
//! and a registry snapshot with 100 live threads.
//!
//! ```text
//! cargo bench -p threadward-bench --bench hot_paths
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use threadward::{registry, Pool, StopSource};

/// `Pool::spawn` + `Job::join` of an empty job on a warm pool: one
/// dispatch to a parked spare and one completion hand-back.
fn spawn_join(c: &mut Criterion) {
    let pool = Pool::builder()
        .name("crit")
        .min_idle(2)
        .build()
        .expect("pool");
    for _ in 0..100 {
        pool.spawn(|_| ()).expect("spawn").join().expect("join");
    }
    c.bench_function("pool_spawn_join_warm", |b| {
        b.iter(|| {
            let job = pool.spawn(|_| black_box(1u64)).expect("spawn");
            black_box(job.join().expect("join"))
        })
    });
    pool.shutdown(Duration::from_secs(5));
}

/// `StopSource::request_stop` on a source with one registered callback
/// (setup and the callback's deregistration are outside the timing).
fn request_stop(c: &mut Criterion) {
    let runs = Arc::new(AtomicUsize::new(0));
    c.bench_function("stop_request_one_callback", |b| {
        b.iter_batched(
            || {
                let src = StopSource::new();
                let r = runs.clone();
                let cb = src.token().on_stop(move || {
                    r.fetch_add(1, Ordering::Relaxed);
                });
                (src, cb)
            },
            |(src, cb)| {
                black_box(src.request_stop());
                (src, cb)
            },
            BatchSize::SmallInput,
        )
    });
    assert!(runs.load(Ordering::Relaxed) > 0);
}

/// `registry::snapshot` with 100 managed threads asleep in `cx.sleep`.
fn snapshot(c: &mut Criterion) {
    let threads: Vec<_> = (0..100)
        .map(|i| {
            threadward::spawn(format!("snap-{i}"), |cx| {
                let _ = cx.sleep(Duration::from_secs(3600));
            })
            .expect("spawn")
        })
        .collect();
    c.bench_function("registry_snapshot_100_threads", |b| {
        b.iter(|| black_box(registry::snapshot().threads.len()))
    });
    threadward::stop_all(threads);
}

criterion_group!(hot_paths, spawn_join, request_stop, snapshot);
criterion_main!(hot_paths);
