//! Tiny-job throughput on a default pool: `cargo run --release -p threadward --example tiny`
//! (a quick harness for the pool's per-job cost; `threadward-bench` has the comparison).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let pool = threadward::Pool::builder().build().unwrap();
    let n = 400_000;
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    for _ in 0..n {
        let d = done.clone();
        drop(
            pool.spawn(move |_| {
                d.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap(),
        );
    }
    pool.wait_idle();
    let dt = t0.elapsed();
    println!(
        "{:.0} k jobs/s  {:?}",
        n as f64 / dt.as_secs_f64() / 1000.0,
        pool.stats()
    );
}
