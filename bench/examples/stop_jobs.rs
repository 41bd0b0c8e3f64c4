//! A harness for the cost of `Pool::shutdown` with `N` jobs blocked in a
//! stop-aware sleep: ms from the call until the last job saw its stop,
//! and until the call returned.
//!
//! `cargo run --release -p threadward-bench --example stop_jobs -- 1000 5`

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1000, |a| a.parse().expect("N"));
    let reps: usize = args.next().map_or(5, |a| a.parse().expect("R"));
    for _ in 0..reps {
        let pool = threadward::Pool::builder()
            .name("stopj")
            .max_threads(n + 8)
            .build()
            .expect("pool");
        let base = Instant::now();
        let started = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(AtomicU64::new(0));
        for _ in 0..n {
            let (s, l) = (started.clone(), last.clone());
            drop(pool.spawn_hinted(threadward::JobHint::MayBlock, move |cx| {
                s.fetch_add(1, Ordering::SeqCst);
                if cx.sleep(Duration::from_secs(3600)).is_err() {
                    l.fetch_max(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
                }
            }));
        }
        while started.load(Ordering::SeqCst) < n {
            assert!(
                base.elapsed() < Duration::from_secs(60),
                "jobs did not start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        let t0 = base.elapsed();
        if std::env::var_os("STOP_JOBS_WINDOW").is_some() {
            // For `perf record -k CLOCK_MONOTONIC`: the shutdown's window.
            eprintln!("window start {:?}", Instant::now());
        }
        let report = pool.shutdown(Duration::from_secs(10));
        if std::env::var_os("STOP_JOBS_WINDOW").is_some() {
            eprintln!("window end {:?}", Instant::now());
        }
        let returned = base.elapsed() - t0;
        let seen = Duration::from_nanos(last.load(Ordering::SeqCst)).saturating_sub(t0);
        println!(
            "{n} jobs: last observed {:.1} ms, returned {:.1} ms, {} straggler(s)",
            seen.as_secs_f64() * 1e3,
            returned.as_secs_f64() * 1e3,
            report.stragglers.len()
        );
    }
}
