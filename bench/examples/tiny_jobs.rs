//! A 30-line harness for profiling the pool's per-job cost: `N` tiny jobs
//! through `Pool::spawn` with the handle dropped, from `S` submitters,
//! `R` rounds, each beside the same jobs on a fixed ncpu `threadpool`.
//!
//! `cargo run --release -p threadward-bench --example tiny_jobs -- 200000 1 5`
//! (run under `perf record -g` to see where a job's time goes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `n` jobs counting into one counter from `subs` threads through
/// `submit`, waits until all ran; jobs per second.
fn round(n: usize, subs: usize, submit: &(dyn Fn(Box<dyn FnOnce() + Send>) + Sync)) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let per = n / subs;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..subs {
            s.spawn(|| {
                for _ in 0..per {
                    let d = done.clone();
                    submit(Box::new(move || {
                        d.fetch_add(1, Ordering::Relaxed);
                    }));
                }
            });
        }
    });
    while done.load(Ordering::Relaxed) < per * subs {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "jobs did not finish"
        );
        // As the bench waits: asleep, not competing for the CPUs.
        std::thread::sleep(Duration::from_micros(100));
    }
    (per * subs) as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(200_000, |a| a.parse().expect("N"));
    let subs: usize = args.next().map_or(1, |a| a.parse().expect("S"));
    let reps: usize = args.next().map_or(5, |a| a.parse().expect("R"));
    // A fourth argument `tw` leaves threadpool out, `tp` runs only
    // threadpool (for a profile of one side).
    let only = args.next();
    let both = only.as_deref() != Some("tw");
    let tw_too = only.as_deref() != Some("tp");
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limit: Option<usize> = std::env::var("TW_LIMIT").ok().map(|v| v.parse().unwrap());
    let mut b = threadward::Pool::builder().name("tiny");
    if let Some(l) = limit {
        b = b.concurrency(threadward::Concurrency::Limit(l));
    }
    let pool = b.build().expect("pool");
    // Shared by reference, as the bench does: `ThreadPool` is `Sync`. (A
    // `Mutex` around it, as here before, added a lock to each of its
    // submits and made the ratios 10-20 % kinder to threadward than the
    // bench's.)
    let fixed = threadpool::ThreadPool::new(ncpu);
    for _ in 0..reps {
        // The boxed closure is the bench's; both systems get the same one.
        let (tw, ex) = if tw_too {
            (
                round(n, subs, &|f| drop(pool.spawn(move |_| f()))),
                round(n, subs, &|f| pool.execute(move |_| f()).expect("accepted")),
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        let tp = if both {
            round(n, subs, &|f| fixed.execute(f))
        } else {
            f64::NAN
        };
        let st = pool.stats();
        println!(
            "{n} jobs, {subs} submitter(s): spawn {:.0} k/s ({:.2}x), execute {:.0} k/s ({:.2}x), threadpool {:.0} k/s, threads {} (peak {}, compensated {})",
            tw / 1e3,
            tw / tp,
            ex / 1e3,
            ex / tp,
            tp / 1e3,
            st.threads,
            st.peak,
            st.compensated
        );
    }
}
