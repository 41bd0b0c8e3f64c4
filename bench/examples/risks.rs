//! Issue 19's known risks, measured: holding `threads` until a thread's
//! exit ended makes replacements wait for a join. (1) A `max_idle(0)`
//! flood: workers exit as soon as they park and come back for the next
//! burst. (2) `Queue::Handoff` at `max_threads`: how many jobs are
//! accepted and refused, and how long a refusal takes.
//!
//! `cargo run --release -p threadward-bench --example risks`

use std::time::{Duration, Instant};

use threadward::{Pool, Queue, SpawnError};

fn flood() {
    let pool = Pool::builder()
        .name("flood")
        .max_threads(2)
        .max_idle(0)
        .min_idle(0)
        .build()
        .expect("pool");
    let t0 = Instant::now();
    let mut jobs = 0u64;
    while t0.elapsed() < Duration::from_secs(1) {
        for _ in 0..50 {
            drop(pool.spawn(|_| std::hint::black_box(0u64)));
            jobs += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(pool.wait_idle_timeout(Duration::from_secs(10)));
    let dt = t0.elapsed();
    let s = pool.stats();
    println!(
        "max_idle(0) flood: {:.0} k jobs/s, {} threads spawned, {} jobs",
        jobs as f64 / dt.as_secs_f64() / 1e3,
        s.threads_spawned,
        jobs
    );
}

fn handoff() {
    let pool = Pool::builder()
        .name("handoff")
        .max_threads(4)
        .min_idle(0)
        .queue(Queue::Handoff)
        .build()
        .expect("pool");
    let (mut ok, mut refused) = (0u64, 0u64);
    let mut refusal_ns = 0u128;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        match pool.spawn(|_| std::thread::sleep(Duration::from_micros(300))) {
            Ok(_) => ok += 1,
            Err(SpawnError::AtCapacity) => {
                refused += 1;
                refusal_ns += t.elapsed().as_nanos();
            }
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let s = pool.stats();
    println!(
        "handoff at max_threads(4): {ok} accepted, {refused} refused (mean {:.1} us each), {} threads spawned",
        refusal_ns as f64 / refused.max(1) as f64 / 1e3,
        s.threads_spawned
    );
}

fn main() {
    for _ in 0..3 {
        flood();
        handoff();
    }
}
