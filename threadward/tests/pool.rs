//! The pool through its public API. Several behaviours are ported from
//! JSR-166's `ThreadPoolExecutorTest` and tokio's `rt_spawn_blocking.rs` /
//! `loom_blocking.rs` (cited per test; the bodies are our own).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{
    bounded, eventually, run_together, running_sleeper, spawn_started, spawn_stubborn,
    with_own_job, SEC,
};
use threadward::registry::{self, ThreadState, WaitKind};
use threadward::{JobError, Pool, Queue, SpawnError, Stopped};

#[test]
fn jobs_run_and_return_values() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().name("values").build().unwrap();
        let jobs: Vec<_> = (0..200u64)
            .map(|i| pool.spawn(move |_| i * 2).unwrap())
            .collect();
        let total: u64 = jobs.into_iter().map(|j| j.join().unwrap()).sum();
        assert_eq!(total, 2 * (0..200).sum::<u64>());
        pool.wait_idle();
        let s = pool.stats();
        assert_eq!(s.submitted, 200);
        assert_eq!(s.completed, 200);
        assert_eq!(s.busy + s.queued, 0);
    });
}

#[test]
fn zero_sized_and_inconsistent_pools_are_refused() {
    let e = Pool::builder().max_threads(0).build().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("max_threads"));
    let e = Pool::builder()
        .min_idle(5)
        .max_threads(2)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("min_idle"));
    let e = Pool::builder().name("").build().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn min_idle_zero_creates_a_thread_for_the_first_job() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().min_idle(0).build().unwrap();
        assert_eq!(pool.stats().threads, 0);
        assert_eq!(pool.spawn(|_| 5).unwrap().join(), Ok(5));
        assert!(pool.stats().threads_spawned >= 1);
    });
}

#[test]
fn warm_spares_are_ready_after_build() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().min_idle(4).build().unwrap();
        eventually(5 * SEC, "4 parked spares", || pool.stats().idle == 4);
        // Dispatching to a spare creates no thread on the submitter's path:
        // the spawn count only grows via the manager, off this thread.
        let j = pool.spawn(|cx| cx.name().to_owned()).unwrap();
        assert!(j.join().unwrap().starts_with("pool-"));
    });
}

#[test]
fn keep_alive_shrinks_to_min_idle() {
    // JSR-166 ThreadPoolExecutorTest: "keep-alive time shrinks the pool"
    // (testGetPoolSize/allowCoreThreadTimeOut): threads beyond the core
    // count exit after the keep-alive.
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .min_idle(2)
            .idle_timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        run_together(&pool, 20);
        assert!(pool.stats().peak >= 20);
        eventually(10 * SEC, "pool shrinks to min_idle", || {
            let s = pool.stats();
            s.threads == 2 && s.idle == 2
        });
        // And it stays usable.
        assert_eq!(pool.spawn(|_| 1).unwrap().join(), Ok(1));
    });
}

#[test]
fn keep_alive_shrinks_to_zero() {
    // JSR-166: allowCoreThreadTimeOut(true) lets the pool shrink to zero.
    bounded(30 * SEC, || {
        let pool = Pool::builder()
            .min_idle(0)
            .idle_timeout(Duration::from_millis(20))
            .build()
            .unwrap();
        for _ in 0..5 {
            pool.spawn(|_| ()).unwrap();
        }
        pool.wait_idle();
        eventually(10 * SEC, "pool shrinks to zero", || {
            pool.stats().threads == 0
        });
        assert_eq!(pool.spawn(|_| 2).unwrap().join(), Ok(2));
    });
}

#[test]
fn a_panicking_job_never_kills_the_pool() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().max_threads(1).build().unwrap();
        let bad = pool.spawn(|_| -> u8 { panic!("job exploded") }).unwrap();
        assert_eq!(
            bad.join(),
            Err(JobError::Panicked {
                message: "job exploded".into()
            })
        );
        // The same single worker keeps serving.
        for i in 0..10 {
            assert_eq!(pool.spawn(move |_| i).unwrap().join(), Ok(i));
        }
        pool.wait_idle();
        let s = pool.stats();
        assert_eq!(s.panicked, 1);
        assert_eq!(s.completed, 10);
        assert_eq!(s.threads_spawned, 1, "the worker survived its job's panic");
    });
}

#[test]
fn cancel_before_start_means_it_never_runs() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().max_threads(1).build().unwrap();
        let blocker = running_sleeper(&pool);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let queued = pool
            .spawn(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert_eq!(pool.stats().queued, 1);
        assert!(queued.cancel());
        assert!(!queued.cancel(), "second cancel is a no-op");
        assert!(queued.is_finished());
        assert_eq!(queued.join(), Err(JobError::Cancelled));
        assert_eq!(pool.stats().queued, 0);
        // Running job: cancel requests its stop; its value is real.
        assert!(!blocker.cancel());
        assert_eq!(blocker.join(), Ok(Err(Stopped)));
        pool.wait_idle();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        let s = pool.stats();
        assert_eq!(s.cancelled, 1);
        assert_eq!(s.completed, 1);
    });
}

#[test]
fn cancel_racing_start_resolves_exactly_once() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().min_idle(2).build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut cancelled = 0;
        for _ in 0..2000 {
            let r = ran.clone();
            let job = pool
                .spawn(move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            let kept = job.cancel();
            match job.join() {
                Err(JobError::Cancelled) => {
                    assert!(kept);
                    cancelled += 1;
                }
                Ok(()) => assert!(!kept),
                other => panic!("unexpected {other:?}"),
            }
        }
        pool.wait_idle();
        assert_eq!(ran.load(Ordering::SeqCst) + cancelled, 2000);
        let s = pool.stats();
        assert_eq!(s.cancelled as usize, cancelled);
        assert_eq!(s.completed as usize, 2000 - cancelled);
    });
}

#[test]
fn job_stop_requests_stop_and_returns_the_value() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        let job = spawn_started(&pool, move |cx| {
            let mut ticks = 0u32;
            while cx.sleep(Duration::from_millis(1)).is_ok() {
                ticks += 1;
            }
            (ticks, "stopped cleanly")
        });
        let start = Instant::now();
        let (_, msg) = job.stop().unwrap();
        assert_eq!(msg, "stopped cleanly");
        assert!(start.elapsed() < SEC);
    });
}

#[test]
fn every_job_gets_stop_aware_waits() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        let (_keep, never) = crossbeam_channel::unbounded::<u8>();
        let job = spawn_started(&pool, move |cx| cx.recv(&never));
        let id = job.id();
        eventually(5 * SEC, "worker shows the job waiting in a channel", || {
            registry::snapshot()
                .threads
                .iter()
                .any(|t| t.job == Some(id) && t.state == ThreadState::Waiting(WaitKind::Channel))
        });
        assert_eq!(job.stop(), Ok(Err(threadward::RecvError::Stopped)));
    });
}

#[test]
fn a_job_joining_itself_gets_self_join() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        let joined = with_own_job(&pool, |_, me| me.join());
        assert_eq!(joined, Err(JobError::SelfJoin));
    });
}

#[test]
fn a_job_shutting_down_its_own_pool_gets_a_report_not_a_deadlock() {
    bounded(20 * SEC, || {
        let pool = Arc::new(Pool::builder().name("selfish").build().unwrap());
        let p = pool.clone();
        let job = pool
            .spawn(move |cx| {
                let report = p.shutdown(Duration::from_secs(30));
                (report, cx.id())
            })
            .unwrap();
        let (report, me) = job.join().unwrap();
        assert!(report.elapsed < Duration::from_secs(5), "{report}");
        assert_eq!(report.stragglers.len(), 1, "{report}");
        assert_eq!(report.stragglers[0].id, me);
        assert!(matches!(pool.spawn(|_| ()), Err(SpawnError::ShutDown)));
    });
}

#[test]
fn job_is_a_future() {
    // A minimal executor: park the thread until the job's waker unparks it.
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
    bounded(20 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        let job = pool
            .spawn(|cx| {
                let _ = cx.sleep(Duration::from_millis(20));
                "awaited"
            })
            .unwrap();
        assert_eq!(block_on(job), Ok("awaited"));
        let single = Pool::builder().max_threads(1).build().unwrap();
        let cancelled = {
            let blocker = running_sleeper(&single);
            let j = single.spawn(|_| ()).unwrap();
            j.cancel();
            blocker.cancel();
            j
        };
        assert_eq!(block_on(cancelled), Err(JobError::Cancelled));
    });
}

#[test]
fn bounded_queue_and_no_queue_refuse_at_capacity() {
    bounded(20 * SEC, || {
        let pool = Pool::builder()
            .max_threads(1)
            .queue(Queue::Bounded(2))
            .build()
            .unwrap();
        let busy = running_sleeper(&pool);
        let q1 = pool.spawn(|_| 1).unwrap();
        let q2 = pool.spawn(|_| 2).unwrap();
        assert!(matches!(pool.spawn(|_| 3), Err(SpawnError::QueueFull)));
        busy.cancel();
        assert_eq!(q1.join(), Ok(1));
        assert_eq!(q2.join(), Ok(2));

        let pool = Pool::builder()
            .max_threads(1)
            .queue(Queue::Handoff)
            .build()
            .unwrap();
        let busy = running_sleeper(&pool);
        let e = pool.spawn(|_| ()).unwrap_err();
        assert!(matches!(e, SpawnError::AtCapacity), "{e}");
        busy.cancel();
    });
}

#[test]
fn job_submitted_while_the_last_worker_goes_idle_still_runs() {
    // tokio loom_blocking / #8056: a job queued while the only worker parks
    // must not be stranded. Stress the real thing (loom checks the model).
    bounded(30 * SEC, || {
        let pool = Pool::builder().min_idle(1).max_threads(1).build().unwrap();
        for i in 0..5000 {
            let j = pool.spawn(move |_| i).unwrap();
            assert_eq!(j.join_timeout(5 * SEC).map_err(|_| i).unwrap(), Ok(i));
        }
    });
}

#[test]
fn spawn_racing_shutdown_always_resolves() {
    // tokio loom_blocking: "spawn racing shutdown always resolves".
    bounded(60 * SEC, || {
        for round in 0..100 {
            let pool = Arc::new(Pool::builder().min_idle(1).build().unwrap());
            let p = pool.clone();
            let submitter = std::thread::spawn(move || {
                let mut jobs = Vec::new();
                for _ in 0..50 {
                    match p.spawn(|_| 1u8) {
                        Ok(j) => jobs.push(j),
                        Err(SpawnError::ShutDown) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                jobs
            });
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            let report = pool.shutdown(Duration::from_secs(10));
            assert!(report.stragglers.is_empty());
            for j in submitter.join().unwrap() {
                match j.join_timeout(5 * SEC) {
                    Ok(Ok(1)) | Ok(Err(JobError::ShutDown)) => {}
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => panic!("job never resolved"),
                }
            }
        }
    });
}

#[test]
fn shutdown_cancels_queued_stops_running_and_reports_counts() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().max_threads(2).build().unwrap();
        let running = [running_sleeper(&pool), running_sleeper(&pool)];
        let queued: Vec<_> = (0..3).map(|_| pool.spawn(|_| ()).unwrap()).collect();
        let report = pool.shutdown(Duration::from_secs(10));
        assert_eq!(report.cancelled_queued, 3);
        assert_eq!(report.stopped_running, 2);
        assert!(report.stragglers.is_empty());
        for j in running {
            assert_eq!(j.join(), Ok(Err(Stopped)));
        }
        for j in queued {
            assert_eq!(j.join(), Err(JobError::ShutDown));
        }
        let s = pool.stats();
        assert_eq!(s.threads, 0);
        assert_eq!(s.submitted, s.completed + s.panicked + s.cancelled);
        // Idempotent.
        let again = pool.shutdown(Duration::from_secs(1));
        assert!(again.stragglers.is_empty());
        assert_eq!(again.cancelled_queued, 0);
    });
}

#[test]
fn shutdown_never_hangs_past_its_deadline_and_reports_stragglers() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().name("stubborn").build().unwrap();
        let release = spawn_stubborn(&pool);
        let deadline = Duration::from_millis(200);
        let start = Instant::now();
        let report = pool.shutdown(deadline);
        let took = start.elapsed();
        assert!(took >= deadline);
        assert!(
            took < deadline + Duration::from_millis(500),
            "took {took:?}"
        );
        assert_eq!(report.stragglers.len(), 1, "{report}");
        let s = &report.stragglers[0];
        assert!(s.name.starts_with("stubborn-"));
        assert!(s.job_age.unwrap() >= deadline);
        assert!(report.to_string().contains("stubborn-"));
        // Still visible in the registry, then gone once it finally returns.
        let id = s.id;
        let visible = || registry::snapshot().threads.iter().any(|t| t.id == id);
        assert!(visible());
        release.store(true, Ordering::SeqCst);
        eventually(5 * SEC, "straggler exits", || !visible());
    });
}

#[test]
fn close_runs_queued_jobs_then_stops() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().max_threads(2).build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..50)
            .map(|_| {
                let r = ran.clone();
                pool.spawn(move |_| {
                    std::thread::sleep(Duration::from_micros(200));
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        let report = pool.close(Duration::from_secs(10));
        assert!(report.stragglers.is_empty());
        assert_eq!(report.cancelled_queued, 0);
        assert_eq!(ran.load(Ordering::SeqCst), 50);
        for j in jobs {
            assert_eq!(j.join(), Ok(()));
        }
        assert!(matches!(pool.spawn(|_| ()), Err(SpawnError::ShutDown)));
    });
}

#[test]
fn dropping_the_pool_shuts_it_down() {
    bounded(20 * SEC, || {
        let pool = Pool::builder().name("dropme").build().unwrap();
        let job = running_sleeper(&pool);
        drop(pool);
        assert_eq!(job.join(), Ok(Err(Stopped)));
        let left: Vec<_> = registry::snapshot()
            .threads
            .into_iter()
            .filter(|t| t.name.starts_with("dropme"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn stats_add_up_while_jobs_are_in_flight() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(4).build().unwrap();
        let gate = Arc::new(Barrier::new(5));
        let mut jobs = Vec::new();
        for _ in 0..4 {
            let g = gate.clone();
            jobs.push(
                pool.spawn(move |_| {
                    g.wait();
                })
                .unwrap(),
            );
        }
        for _ in 0..6 {
            jobs.push(pool.spawn(|_| std::thread::sleep(Duration::ZERO)).unwrap());
        }
        eventually(10 * SEC, "4 busy", || pool.stats().busy == 4);
        let s = pool.stats();
        assert_eq!(s.submitted, 10);
        assert_eq!(s.queued, 6);
        assert_eq!(
            s.submitted,
            s.completed + s.panicked + s.cancelled + s.busy as u64 + s.queued as u64
        );
        gate.wait();
        for j in jobs {
            j.join().unwrap();
        }
        pool.wait_idle();
        let s = pool.stats();
        assert_eq!(s.completed, 10);
        assert!(s.peak <= 4);
    });
}
