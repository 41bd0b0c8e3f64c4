//! A 30-line harness for profiling the pool's per-job cost: `N` tiny jobs
//! through `Pool::spawn` with the handle dropped, from `S` submitters.
//!
//! `cargo run --release -p threadward-bench --example tiny_jobs -- 200000 1`
//! (run under `perf record -g` to see where a job's time goes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(200_000, |a| a.parse().expect("N"));
    let subs: usize = args.next().map_or(1, |a| a.parse().expect("S"));
    let reps: usize = args.next().map_or(5, |a| a.parse().expect("R"));
    let pool = threadward::Pool::builder()
        .name("tiny")
        .build()
        .expect("pool");
    for _ in 0..reps {
        let done = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..subs {
                s.spawn(|| {
                    for _ in 0..n / subs {
                        let d = done.clone();
                        drop(pool.spawn(move |_| d.fetch_add(1, Ordering::Relaxed)));
                    }
                });
            }
        });
        while done.load(Ordering::Relaxed) < n / subs * subs {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "jobs did not finish"
            );
            std::thread::yield_now();
        }
        let dt = t0.elapsed();
        let st = pool.stats();
        println!(
            "{n} jobs, {subs} submitter(s): {:.0} k jobs/s, threads {} (peak {}, compensated {})",
            n as f64 / dt.as_secs_f64() / 1e3,
            st.threads,
            st.peak,
            st.compensated
        );
    }
}
