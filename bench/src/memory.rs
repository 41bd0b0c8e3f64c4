//! Scenario 7: resident memory per idle pool worker vs a bare parked std
//! thread (VmRSS delta over N threads).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::util::{rss_kib, settle_threads, thread_count, wait_for};

/// What is created N times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    /// A std thread parked in `thread::park`, threadward's default stack size.
    Parked,
    /// The same with std's default 2 MiB stack.
    Parked2M,
    /// An idle `threadward::Pool` worker (`min_idle = N`).
    Threadward,
    /// An idle `threadpool` worker.
    Threadpool,
}

impl MemKind {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            MemKind::Parked => "floor: parked std thread (256 KiB stack)",
            MemKind::Parked2M => "parked std thread (2 MiB stack)",
            MemKind::Threadward => "threadward idle worker",
            MemKind::Threadpool => "threadpool idle worker",
        }
    }
}

/// KiB of RSS per thread for `n` idle threads of `kind`.
pub fn rss_per_idle(kind: MemKind, n: usize) -> f64 {
    let base_threads = thread_count();
    let rss0 = rss_kib();
    let settled = |want: u64| {
        wait_for(Duration::from_secs(30), || thread_count() >= want);
        thread::sleep(Duration::from_millis(50));
        rss_kib()
    };
    let want = base_threads + n as u64;
    let rss1 = match kind {
        MemKind::Parked | MemKind::Parked2M => {
            let stop = Arc::new(AtomicBool::new(false));
            let started = Arc::new(AtomicUsize::new(0));
            let stack = if kind == MemKind::Parked {
                threadward::DEFAULT_STACK_SIZE
            } else {
                2 << 20
            };
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let (s, st) = (stop.clone(), started.clone());
                    thread::Builder::new()
                        .stack_size(stack)
                        .spawn(move || {
                            st.fetch_add(1, Ordering::AcqRel);
                            while !s.load(Ordering::Acquire) {
                                thread::park();
                            }
                        })
                        .expect("spawn")
                })
                .collect();
            wait_for(Duration::from_secs(30), || {
                started.load(Ordering::Acquire) == n
            });
            let r = settled(want);
            stop.store(true, Ordering::Release);
            for h in hs {
                h.thread().unpark();
                let _ = h.join();
            }
            r
        }
        MemKind::Threadward => {
            let pool = threadward::Pool::builder()
                .name("tw-mem")
                .min_idle(n)
                .max_threads(n)
                .build()
                .expect("pool");
            wait_for(Duration::from_secs(30), || pool.stats().idle == n);
            // +1: the pool's manager thread.
            let r = settled(want + 1);
            pool.shutdown(Duration::from_secs(10));
            r
        }
        MemKind::Threadpool => {
            let pool = threadpool::ThreadPool::new(n);
            let r = settled(want);
            drop(pool);
            r
        }
    };
    settle_threads(base_threads, Duration::from_secs(10));
    rss1.saturating_sub(rss0) as f64 / n as f64
}
