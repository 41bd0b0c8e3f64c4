//! The monitor's own CPU while a pool is saturated: (1) by CPU-only jobs
//! (1 ms of spinning each, no blocks: the monitor ticks at 100 µs), (2) by
//! a mix with foreign blocks (its 50 µs fast tick runs). Read from the
//! monitor thread's `/proc/self/task/TID/schedstat` over each phase.
//!
//! `cargo run --release -p threadward-bench --example monitor_cpu -- 5`

use std::time::{Duration, Instant};

/// The on-CPU nanoseconds of the thread named `name`.
fn cpu_ns(name: &str) -> Option<u64> {
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = e.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim_end() == name {
            let s = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            return s.split_ascii_whitespace().next()?.parse().ok();
        }
    }
    None
}

fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Keeps the pool saturated for `secs` with jobs from `job`; the
/// monitor's share of one CPU over that time.
fn phase(pool: &threadward::Pool, secs: u64, job: fn(u64)) -> f64 {
    let t0 = Instant::now();
    let c0 = cpu_ns("threadward-mon");
    let mut i = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        while pool.stats().queued < 8 {
            drop(pool.spawn(move |_| job(i)));
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let c1 = cpu_ns("threadward-mon");
    let dt = t0.elapsed().as_nanos() as f64;
    match (c0, c1) {
        (Some(a), Some(b)) => (b - a) as f64 / dt * 100.0,
        _ => f64::NAN,
    }
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .map_or(5, |a| a.parse().expect("seconds"));
    let pool = threadward::Pool::builder()
        .name("mon-cpu")
        .learn_hints(false)
        .build()
        .expect("pool");
    let cpu = phase(&pool, secs, |_| spin(Duration::from_millis(1)));
    println!("saturated by CPU-only jobs: monitor at {cpu:.2}% of one CPU");
    let mixed = phase(&pool, secs, |i| {
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        } else {
            spin(Duration::from_micros(50));
        }
    });
    println!("saturated by a mix with 5% foreign blocks: monitor at {mixed:.2}% of one CPU");
    println!("{:?}", pool.stats());
}
