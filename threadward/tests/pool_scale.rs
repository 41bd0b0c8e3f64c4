//! Thousands of blocked jobs, OS thread refusal, and thread-leak checks.
//!
//! A test binary with its own `main` (`harness = false`): the leak checks
//! compare `/proc/self/task` with a baseline, and libtest starting another
//! test's thread mid-check would look like a leak. Here the cases run one
//! after another on the main thread, each under a time bound. An argument
//! runs only the cases whose name contains it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, eventually, task_count, HOUR, SEC};
use threadward::{Pool, SpawnError, Stopped};

/// `n` jobs that block in a stop-aware wait until stopped, all running at
/// once; then `shutdown` stops them all with no straggler and every thread
/// is gone.
fn blocked_jobs_then_shutdown(n: usize) {
    let baseline = task_count();
    let pool = Pool::builder()
        .name(format!("scale{n}"))
        .max_threads(n + 16)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let r = running.clone();
            pool.spawn(move |cx| {
                r.fetch_add(1, Ordering::SeqCst);
                cx.sleep(HOUR).map(|_| i)
            })
            .unwrap()
        })
        .collect();
    eventually(50 * SEC, "all jobs running concurrently", || {
        running.load(Ordering::SeqCst) == n
    });
    let s = pool.stats();
    assert_eq!(s.busy, n);
    assert!(s.threads >= n);
    let report = pool.shutdown(Duration::from_secs(30));
    assert!(report.stragglers.is_empty(), "{report}");
    assert_eq!(report.stopped_running, n);
    for j in jobs {
        assert_eq!(j.join(), Ok(Err(Stopped)));
    }
    drop(pool);
    eventually(10 * SEC, "threads back to baseline", || {
        task_count() <= baseline
    });
}

/// Issue 10 item 14: around 16 000 threads the process aborted (std could
/// not map the new thread's signal stack: `vm.max_map_count` allows ~4
/// mappings per thread). 20 000 blocked jobs on a pool allowed 30 000
/// threads: the thread budget refuses creation like EAGAIN, the extra jobs
/// wait, nothing aborts, and every job resolves.
fn twenty_thousand_blocked_jobs_outlive_the_mapping_budget() {
    bounded(120 * SEC, || {
        let baseline = task_count();
        let n = 20_000;
        let pool = Pool::builder()
            .name("budget")
            .max_threads(30_000)
            .stack_size(64 * 1024)
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..n)
            .map(|_| {
                let r = running.clone();
                pool.spawn(move |cx| {
                    r.fetch_add(1, Ordering::SeqCst);
                    cx.sleep(HOUR)
                })
                .unwrap()
            })
            .collect();
        eventually(90 * SEC, "the budget refuses threads", || {
            pool.stats().spawn_failures > 0
        });
        // A managed thread is refused the same way, with a clear error.
        let e = loop {
            match threadward::spawn("over-budget", |cx| cx.sleep(HOUR)) {
                Ok(t) => drop(t),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        let s = pool.stats();
        println!(
            "  {} threads ran {} jobs at once, {} refusals, {} queued",
            s.threads,
            running.load(Ordering::SeqCst),
            s.spawn_failures,
            s.queued
        );
        assert!(s.threads < n && s.queued > 0, "{s:?}");
        let report = pool.shutdown(60 * SEC);
        assert!(report.stragglers.is_empty(), "{report}");
        let (mut stopped, mut never_ran) = (0, 0);
        for j in jobs {
            match j.join_timeout(10 * SEC).expect("every job resolves") {
                Ok(Err(Stopped)) => stopped += 1,
                Err(threadward::JobError::ShutDown) => never_ran += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(stopped + never_ran, n);
        assert_eq!(stopped, running.load(Ordering::SeqCst));
        drop(pool);
        eventually(30 * SEC, "threads back to baseline", || {
            task_count() <= baseline
        });
    });
}

/// Issue 11: one process-wide manager (and monitor) serves every pool, so
/// an idle pool costs its `min_idle` spares and nothing else.
fn idle_pools_cost_only_their_spares() {
    bounded(30 * SEC, || {
        let baseline = task_count();
        let pools: Vec<Pool> = (0..30)
            .map(|i| Pool::builder().name(format!("idle{i}")).build().unwrap())
            .collect();
        let grown = task_count() - baseline;
        println!("  30 idle pools (min_idle 1): {grown} threads");
        // 30 spares, the manager, and at most the monitor.
        assert!(grown <= 30 + 2, "{grown} threads for 30 idle pools");
        drop(pools);
        eventually(10 * SEC, "threads back to baseline", || {
            task_count() <= baseline
        });
    });
}

fn a_thousand_blocked_jobs_run_at_once_and_shut_down_cleanly() {
    bounded(60 * SEC, || blocked_jobs_then_shutdown(1000));
}

fn ten_thousand_blocked_jobs_run_at_once_and_shut_down_cleanly() {
    bounded(120 * SEC, || blocked_jobs_then_shutdown(10_000));
}

fn idle_pools_leak_no_threads() {
    bounded(60 * SEC, || {
        let baseline = task_count();
        for round in 0..20 {
            let pool = Pool::builder()
                .min_idle(2)
                .idle_timeout(Duration::from_millis(5))
                .build()
                .unwrap();
            let jobs: Vec<_> = (0..20)
                .map(|i| {
                    pool.spawn(move |cx| cx.sleep(Duration::from_millis(2)).map(|_| i))
                        .unwrap()
                })
                .collect();
            for (i, j) in jobs.into_iter().enumerate() {
                assert_eq!(j.join(), Ok(Ok(i)), "round {round}");
            }
            std::thread::sleep(Duration::from_millis(20)); // let some time out
        }
        eventually(10 * SEC, "threads back to baseline", || {
            task_count() <= baseline
        });
    });
}

/// Runs the test named `name` in a child process with `env` set, and
/// returns its combined output, failing if the child failed.
fn run_child(name: &str, env: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .arg(name)
        .env(env, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    text
}

/// Makes the OS refuse new threads beyond `limit` for the calling thread
/// and the threads it creates: lowers RLIMIT_NPROC and, as root (whom the
/// limit does not bind), drops this thread to uid 65534.
fn limit_threads(limit: u64) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::Nproc,
        Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .unwrap();
    if rustix::process::getuid().is_root() {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(65534)).unwrap();
    }
}

const NPROC_CHILD: &str = "THREADWARD_NPROC_CHILD";

fn os_refusing_threads_loses_no_job() {
    // JSR-166 ThreadPoolExecutorTest "failing thread factory still
    // completes all tasks", with a real refusal instead of a factory, and
    // tokio #8406 (a job orphaned when thread creation fails with EAGAIN).
    if std::env::var_os(NPROC_CHILD).is_none() {
        let out = bounded(60 * SEC, || {
            run_child("os_refusing_threads_loses_no_job", NPROC_CHILD)
        });
        assert!(out.contains("child: ok"), "{out}");
        return;
    }
    limit_threads(12);
    // 1. Managed threads: spawning past the limit is an io::Error.
    let mut held = Vec::new();
    let err = loop {
        match threadward::Builder::new()
            .name(format!("hog-{}", held.len()))
            .stack_size(64 * 1024)
            .spawn(|cx| cx.sleep(HOUR))
        {
            Ok(t) => held.push(t),
            Err(e) => break e,
        }
        assert!(held.len() < 64, "the limit did not take effect");
    };
    assert_eq!(err.raw_os_error(), Some(11), "expected EAGAIN: {err}");
    let budget = held.len();
    assert!(budget >= 4, "too few threads allowed ({budget})");
    drop(held.split_off(budget - 4)); // free 4 slots: 2 managers + 2 workers
                                      // 2. A pool that can have only two workers runs 100 jobs anyway.
                                      // The kernel uncounts an exited thread a moment after join returns.
    let start = std::time::Instant::now();
    let empty = loop {
        match Pool::builder().name("empty").min_idle(0).build() {
            Ok(p) => break p,
            Err(e) if start.elapsed() < 5 * SEC => {
                assert_eq!(e.raw_os_error(), Some(11), "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("pool never built: {e}"),
        }
    };
    let pool = loop {
        match Pool::builder()
            .name("starved")
            .min_idle(1)
            .max_threads(50)
            .build()
        {
            Ok(p) => break p,
            Err(e) if start.elapsed() < 5 * SEC => {
                assert_eq!(e.raw_os_error(), Some(11), "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("pool never built: {e}"),
        }
    };
    let jobs: Vec<_> = (0..100)
        .map(|i| {
            pool.spawn(move |cx| cx.sleep(Duration::from_millis(2)).map(|_| i))
                .unwrap()
        })
        .collect();
    for (i, j) in jobs.into_iter().enumerate() {
        assert_eq!(j.join_timeout(30 * SEC).unwrap(), Ok(Ok(i)));
    }
    let s = pool.stats();
    assert!(s.spawn_failures > 0, "no refusal seen: {s:?}");
    assert_eq!(s.completed, 100);
    assert!(s.threads <= 3, "{s:?}");
    assert!(matches!(pool.shutdown(10 * SEC).stragglers.as_slice(), []));
    drop(pool);
    // 2b. Issue 10 item 3: a Bounded(3) pool held 463 waiting jobs under a
    // thread limit. The bound holds while the OS refuses: a job beyond it
    // gets a thread or is refused, with the OS error or QueueFull.
    let bounded_pool = loop {
        match Pool::builder()
            .name("bounded")
            .min_idle(0)
            .max_threads(50)
            .queue(threadward::Queue::Bounded(3))
            .build()
        {
            Ok(p) => break p,
            Err(e) if start.elapsed() < 10 * SEC => {
                assert_eq!(e.raw_os_error(), Some(11), "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("pool never built: {e}"),
        }
    };
    let (mut accepted, mut refused_os, mut refused_full) = (Vec::new(), 0, 0);
    for i in 0..200 {
        match bounded_pool.spawn(move |cx| cx.sleep(Duration::from_millis(2)).map(|_| i)) {
            Ok(j) => accepted.push((i, j)),
            Err(SpawnError::Os(e)) => {
                assert_eq!(e.raw_os_error(), Some(11), "{e}");
                refused_os += 1;
            }
            Err(SpawnError::QueueFull) => refused_full += 1,
            Err(e) => panic!("unexpected refusal {e}"),
        }
        let st = bounded_pool.stats();
        let on_their_way = st.threads - st.idle - st.busy;
        assert!(
            st.queued <= 3 + on_their_way,
            "{} jobs wait, {on_their_way} workers on their way: {st:?}",
            st.queued
        );
    }
    assert!(refused_os + refused_full > 0, "the limit never bit");
    for (i, j) in accepted {
        assert_eq!(j.join_timeout(30 * SEC).unwrap(), Ok(Ok(i)));
    }
    println!("child: bounded pool refused {refused_os} (OS) + {refused_full} (full)");
    drop(bounded_pool);
    // 3. A pool with no worker at all reports the OS error from spawn.
    let filler = held.len();
    loop {
        match threadward::spawn(format!("hog2-{filler}"), |cx| cx.sleep(HOUR)) {
            Ok(t) => held.push(t),
            Err(_) => break,
        }
        assert!(held.len() < 64);
    }
    match empty.spawn(|_| ()) {
        Err(SpawnError::Os(e)) => assert_eq!(e.raw_os_error(), Some(11)),
        other => panic!("expected the OS error, got {other:?}"),
    }
    assert_eq!(empty.stats().threads, 0);
    drop(held);
    println!(
        "child: ok ({budget} threads allowed, {} refusals)",
        s.spawn_failures
    );
}

fn main() {
    if std::env::var_os(NPROC_CHILD).is_some() {
        os_refusing_threads_loses_no_job();
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: [(&str, fn()); 6] = [
        (
            "idle_pools_cost_only_their_spares",
            idle_pools_cost_only_their_spares,
        ),
        (
            "a_thousand_blocked_jobs_run_at_once_and_shut_down_cleanly",
            a_thousand_blocked_jobs_run_at_once_and_shut_down_cleanly,
        ),
        (
            "ten_thousand_blocked_jobs_run_at_once_and_shut_down_cleanly",
            ten_thousand_blocked_jobs_run_at_once_and_shut_down_cleanly,
        ),
        ("idle_pools_leak_no_threads", idle_pools_leak_no_threads),
        (
            "twenty_thousand_blocked_jobs_outlive_the_mapping_budget",
            twenty_thousand_blocked_jobs_outlive_the_mapping_budget,
        ),
        (
            "os_refusing_threads_loses_no_job",
            os_refusing_threads_loses_no_job,
        ),
    ];
    let mut ran = 0;
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let start = std::time::Instant::now();
        case();
        ran += 1;
        println!("test {name} ... ok ({:.2?})", start.elapsed());
    }
    println!("test result: ok. {ran} passed");
}
