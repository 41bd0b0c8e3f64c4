//! The mixed flood of issue 20, alone and interleaved: 20 000 unhinted jobs
//! from one submitter, 95 % spin ~1 µs, 5 % sleep 10 ms in
//! `std::thread::sleep` (a foreign block), on the default pool and on the
//! same pool with `Concurrency::Unlimited`; `rounds` rounds, medians.
//!
//! `cargo run --release -p threadward-bench --example mixed -- 5 [nolearn]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threadward::{Concurrency, Pool};

/// One run: k jobs/s, peak threads, and the pool's stats line.
fn mix(n: usize, unlimited: bool, learn: bool) -> (f64, usize, threadward::PoolStats) {
    let mut b = Pool::builder()
        .name("mix")
        .max_threads(4096)
        .learn_hints(learn);
    if unlimited {
        b = b.concurrency(Concurrency::Unlimited);
    }
    let pool = b.build().expect("pool");
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut most_places = 0;
    for i in 0..n {
        if i % 500 == 0 {
            most_places = most_places.max(pool.stats().adaptive_places);
        }
        let d = done.clone();
        let sleeper = i % 20 == 0;
        pool.execute(move |_| {
            if sleeper {
                std::thread::sleep(Duration::from_millis(10));
            } else {
                let end = Instant::now() + Duration::from_micros(1);
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
            }
            d.fetch_add(1, Ordering::Relaxed);
        })
        .expect("spawn");
    }
    while !pool.wait_idle_timeout(Duration::from_micros(500)) {
        most_places = most_places.max(pool.stats().adaptive_places);
        assert!(t0.elapsed() < Duration::from_secs(60), "hung");
    }
    if !unlimited {
        println!("  most adaptive places seen: {most_places}");
    }
    let dt = t0.elapsed();
    let s = pool.stats();
    pool.shutdown(Duration::from_secs(10));
    (n as f64 / dt.as_secs_f64() / 1000.0, s.peak, s)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(5, |a| a.parse().expect("rounds"));
    // `nolearn` as the second argument: learned hints off.
    let learn = std::env::args().nth(2).as_deref() != Some("nolearn");
    let (mut managed, mut unlimited, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak_m, mut peak_u) = (0, 0);
    for _ in 0..rounds {
        let (m, pm, s) = mix(20_000, false, learn);
        let (u, pu, _) = mix(20_000, true, learn);
        println!(
            "managed {m:.0} k/s ({pm} threads)  unlimited {u:.0} k/s ({pu} threads)  ratio {:.2}",
            m / u
        );
        println!("  {s:?}");
        managed.push(m);
        unlimited.push(u);
        ratios.push(m / u);
        peak_m = peak_m.max(pm);
        peak_u = peak_u.max(pu);
    }
    println!(
        "median: managed {:.0} k/s (peak {peak_m} threads), unlimited {:.0} k/s (peak {peak_u}), ratio {:.2}",
        median(&mut managed),
        median(&mut unlimited),
        median(&mut ratios)
    );
}
