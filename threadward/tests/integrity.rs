//! Regression tests for issue 10 ("every promise holds under panics, races
//! and edge values"). Each test is named after the item it pins and says in
//! prose what broke; each failed on the code before the fix.

mod common;

use std::future::Future;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use common::{bounded, eventually, running_sleeper, spawn_started, task_names, SEC};
use threadward::registry::{self, ThreadState};
use threadward::{Context, JobError, Pool, Queue, SpawnError, Stages, StopSource, Stopped};

/// Panics when dropped (a hostile value, closure capture or payload).
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

/// A pool is healthy: it goes idle, its counts add up, a new job runs and
/// a shutdown leaves no straggler.
fn assert_healthy(pool: &Pool) {
    assert!(
        pool.wait_idle_timeout(5 * SEC),
        "pool never went idle: {:?}",
        pool.stats()
    );
    let s = pool.stats();
    assert_eq!(s.busy, 0, "{s:?}");
    assert_eq!(
        s.submitted,
        s.completed + s.panicked + s.cancelled + s.busy as u64 + s.queued as u64,
        "{s:?}"
    );
    assert_eq!(
        pool.spawn(|_| 7).unwrap().join_timeout(5 * SEC).ok(),
        Some(Ok(7))
    );
    let report = pool.shutdown(5 * SEC);
    assert!(report.stragglers.is_empty(), "{report}");
}

// ---- item 1 ---------------------------------------------------------------

/// A `Read` over a socket whose reads are stop-aware: what a user writes.
struct StopAwareReader<'a> {
    cx: &'a Context,
    sock: UnixStream,
}

impl Read for StopAwareReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.cx.wait_readable(&self.sock)?;
        self.sock.read(buf)
    }
}

/// A stop of `wait_readable` was `ErrorKind::Interrupted`, which
/// `read_exact` retries: the stopped reader spun at 100 % CPU for ever.
#[test]
fn item_01_a_stopped_read_exact_returns_instead_of_spinning() {
    bounded(10 * SEC, || {
        let (a, _b) = UnixStream::pair().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let t = threadward::spawn("reader", move |cx| {
            let mut r = StopAwareReader { cx, sock: a };
            let mut buf = [0u8; 16];
            tx.send(()).unwrap();
            r.read_exact(&mut buf)
        })
        .unwrap();
        rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let e = t
            .stop_timeout(5 * SEC)
            .expect("a stopped read_exact must return, not retry")
            .unwrap()
            .unwrap_err();
        assert!(threadward::is_stopped(&e), "{e}");
        assert_ne!(e.kind(), ErrorKind::Interrupted, "std retries Interrupted");
        assert_ne!(e.kind(), ErrorKind::WouldBlock);
        let e: std::io::Error = Stopped.into();
        assert_ne!(e.kind(), ErrorKind::Interrupted);
    });
}

// ---- item 2 ---------------------------------------------------------------

/// Submitters racing on an empty `max_threads(1)` pool each created a
/// worker: two threads and two jobs at once.
#[test]
fn item_02_max_threads_holds_when_submitters_race_on_an_empty_pool() {
    bounded(50 * SEC, || {
        for round in 0..400 {
            let pool = Arc::new(Pool::builder().min_idle(0).max_threads(1).build().unwrap());
            let running = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let gate = Arc::new(Barrier::new(3));
            let submitters: Vec<_> = (0..3)
                .map(|_| {
                    let (pool, running, most, gate) =
                        (pool.clone(), running.clone(), most.clone(), gate.clone());
                    std::thread::spawn(move || {
                        gate.wait();
                        pool.spawn(move |_| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .unwrap()
                    })
                })
                .collect();
            for s in submitters {
                s.join().unwrap().join().unwrap();
            }
            let s = pool.stats();
            assert!(s.peak <= 1, "round {round}: peak {} threads", s.peak);
            assert_eq!(
                most.load(Ordering::SeqCst),
                1,
                "round {round}: jobs ran at once"
            );
        }
    });
}

// ---- item 3 ---------------------------------------------------------------

/// Jobs waiting with no worker on its way: queued minus the threads that
/// exist but are neither parked nor running a job (created, claimed, on
/// their way to the queue). No idle timeout fires in these tests, so no
/// thread is leaving.
fn unserved(pool: &Pool) -> usize {
    let s = pool.stats();
    s.queued.saturating_sub(s.threads - s.idle - s.busy)
}

/// `Bounded(n)` / `None` only applied once `threads >= max_threads`: during
/// a burst a `Bounded(3)` pool held 48 waiting jobs.
#[test]
fn item_03_queue_bounds_hold_during_a_burst() {
    bounded(30 * SEC, || {
        for (queue, n) in [(Queue::Bounded(3), 3), (Queue::Handoff, 0)] {
            let pool = Pool::builder()
                .max_threads(1000)
                .queue(queue)
                .build()
                .unwrap();
            let release = Arc::new(AtomicBool::new(false));
            let mut jobs = Vec::new();
            for _ in 0..300 {
                let r = release.clone();
                match pool.spawn(move |_| {
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }) {
                    Ok(j) => jobs.push(j),
                    Err(SpawnError::QueueFull | SpawnError::AtCapacity) => {}
                    Err(e) => panic!("{e}"),
                }
                let u = unserved(&pool);
                assert!(u <= n, "{queue:?}: {u} jobs wait with no worker on its way");
            }
            assert!(!jobs.is_empty());
            release.store(true, Ordering::SeqCst);
            for j in jobs {
                j.join_timeout(10 * SEC).expect("job resolves").unwrap();
            }
        }
    });
}

// ---- item 4 ---------------------------------------------------------------

/// A detached job's value whose `Drop` panics killed the worker silently:
/// `busy` never went down and `wait_idle` never returned.
#[test]
fn item_04_a_detached_value_that_panics_on_drop_is_contained() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(2).build().unwrap();
        for _ in 0..4 {
            drop(pool.spawn(|_| PanicOnDrop).unwrap());
        }
        assert_healthy(&pool);
    });
}

/// A cancelled job's closure whose `Drop` panics: `cancel` drops it (or the
/// worker does, if it had already taken it); either way nothing escapes.
#[test]
fn item_04_a_cancelled_closure_that_panics_on_drop_is_contained() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(1).build().unwrap();
        let blocker = running_sleeper(&pool);
        let bomb = PanicOnDrop;
        let queued = pool
            .spawn(move |_| {
                let _keep = &bomb;
            })
            .unwrap();
        assert!(queued.cancel(), "not started yet");
        assert_eq!(queued.join(), Err(JobError::Cancelled));
        blocker.cancel();
        assert_healthy(&pool);
    });
}

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("waker panicked");
    }
}

/// A `Waker` that panics when the job completes ran on the worker outside
/// any guard.
#[test]
fn item_04_a_waker_that_panics_is_contained() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(1).build().unwrap();
        let (go, wait) = crossbeam_channel::bounded::<()>(0);
        let mut job = pool.spawn(move |_| wait.recv().unwrap()).unwrap();
        let waker = Waker::from(Arc::new(PanickingWaker));
        let mut tcx = std::task::Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut job).poll(&mut tcx).is_pending());
        go.send(()).unwrap();
        drop(job);
        assert_healthy(&pool);
    });
}

// ---- item 5 ---------------------------------------------------------------

/// During `shutdown`, a queued closure that panicked on drop made shutdown
/// panic before it stopped the running jobs; the other queued jobs' `join`
/// then blocked for ever.
#[test]
fn item_05_shutdown_survives_a_queued_closure_that_panics_on_drop() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(2).build().unwrap();
        let running: Vec<_> = (0..2).map(|_| running_sleeper(&pool)).collect();
        let before = pool.spawn(|_| ()).unwrap();
        let bomb = PanicOnDrop;
        let _bad = pool.spawn(move |_| drop(bomb)).unwrap();
        let after = pool.spawn(|_| ()).unwrap();
        let report = pool.shutdown(5 * SEC);
        assert!(report.stragglers.is_empty(), "{report}");
        assert_eq!(report.stopped_running, 2, "{report}");
        for j in running {
            assert_eq!(j.join_timeout(5 * SEC).ok(), Some(Ok(Err(Stopped))));
        }
        assert_eq!(
            before.join_timeout(5 * SEC).ok(),
            Some(Err(JobError::ShutDown))
        );
        assert_eq!(
            after.join_timeout(5 * SEC).ok(),
            Some(Err(JobError::ShutDown))
        );
    });
}

// ---- item 6 ---------------------------------------------------------------

/// A panicking stop callback escaped `request_stop`.
#[test]
fn item_06_a_panicking_callback_never_escapes_request_stop() {
    let source = StopSource::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let _a = source.token().on_stop(|| panic!("callback panic"));
    let _b = source.token().on_stop(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(source.request_stop());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Registered after the stop: runs at once, on this thread, contained.
    let _c = source.token().on_stop(|| panic!("late callback panic"));
}

/// A panicking callback stopped `Pool::shutdown` half way (1 of 3 running
/// jobs stopped).
#[test]
fn item_06_shutdown_stops_every_job_despite_panicking_callbacks() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(3).build().unwrap();
        let jobs: Vec<_> = (0..3)
            .map(|_| {
                spawn_started(&pool, |cx| {
                    let _g = cx.token().on_stop(|| panic!("callback panic"));
                    cx.sleep(common::HOUR)
                })
            })
            .collect();
        let report = pool.shutdown(5 * SEC);
        assert_eq!(report.stopped_running, 3, "{report}");
        assert!(report.stragglers.is_empty(), "{report}");
        for j in jobs {
            assert_eq!(j.join_timeout(5 * SEC).ok(), Some(Ok(Err(Stopped))));
        }
    });
}

/// A panicking callback turned `Thread::stop_timeout` into an unbounded
/// join (the unwinding dropped the `Thread`, whose drop joins).
#[test]
fn item_06_stop_timeout_with_a_panicking_callback_stays_bounded() {
    bounded(10 * SEC, || {
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let t = threadward::spawn("cb-panic", move |cx| {
            let _g = cx.token().on_stop(|| panic!("callback panic"));
            tx.send(()).unwrap();
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
        rx.recv().unwrap();
        let start = Instant::now();
        let t = t.stop_timeout(Duration::from_millis(100)).unwrap_err();
        assert!(start.elapsed() < SEC, "took {:?}", start.elapsed());
        release.store(true, Ordering::SeqCst);
        t.join().unwrap();
    });
}

/// A slow callback (3 s) made `shutdown(200 ms)` take 3 s. The job and the
/// thread ignore their stop (a foreign wait), so only the callback could
/// have ended them; the calls must return by their deadlines anyway.
#[test]
fn item_06_a_slow_callback_does_not_stretch_deadlines() {
    bounded(30 * SEC, || {
        let release = Arc::new(AtomicBool::new(false));
        let stubborn = |release: Arc<AtomicBool>, started: crossbeam_channel::Sender<()>| {
            move |cx: &Context| {
                let _g = cx
                    .token()
                    .on_stop(|| std::thread::sleep(Duration::from_secs(3)));
                started.send(()).unwrap();
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let pool = Pool::builder().max_threads(2).build().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = pool.spawn(stubborn(release.clone(), tx)).unwrap();
        rx.recv().unwrap();
        let start = Instant::now();
        let report = pool.shutdown(Duration::from_millis(200));
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "shutdown(200 ms) took {took:?}"
        );
        assert_eq!(report.stragglers.len(), 1, "{report}");

        let (tx, rx) = crossbeam_channel::bounded(1);
        let f = stubborn(release.clone(), tx);
        let t = threadward::spawn("slow-cb", move |cx| f(cx)).unwrap();
        rx.recv().unwrap();
        let start = Instant::now();
        let t = t.stop_timeout(Duration::from_millis(200));
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "stop_timeout(200 ms) took {took:?}"
        );
        release.store(true, Ordering::SeqCst);
        // Let the slow callbacks finish before the test ends.
        if let Err(t) = t {
            assert!(t.join_timeout(10 * SEC).is_ok());
        }
        assert!(job.join_timeout(10 * SEC).is_ok());
    });
}

/// A panicking stop callback of a running job aborted the process when the
/// pool was dropped during unwinding (a panic while panicking).
#[test]
fn item_06_dropping_a_pool_while_unwinding_with_a_panicking_callback() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().max_threads(2).build().unwrap();
        let _job = spawn_started(&pool, |cx| {
            let _g = cx.token().on_stop(|| panic!("callback panic"));
            cx.sleep(common::HOUR)
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _pool = pool;
            panic!("unwinding with a pool");
        }));
        assert!(r.is_err());
    });
}

/// Through `Stages`, a panicking callback of a thread stage broke the
/// group's deadline.
#[test]
fn item_06_stages_shutdown_keeps_its_deadline() {
    bounded(30 * SEC, || {
        let mut stages = Stages::new("svc");
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        stages
            .thread("stubborn", Duration::from_millis(100), move || {
                threadward::spawn("stubborn-t", move |cx| {
                    let _g = cx.token().on_stop(|| panic!("callback panic"));
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .unwrap();
        let start = Instant::now();
        let report = stages.shutdown(Duration::from_millis(300));
        assert!(start.elapsed() < SEC, "took {:?}", start.elapsed());
        assert!(!report.is_clean(), "{report}");
        release.store(true, Ordering::SeqCst);
    });
}

// ---- item 7 ---------------------------------------------------------------

/// `lookup` of a pool worker returned a `Stopper` that reached nothing, and
/// a worker whose job was asked to stop showed `running`. Workers are not
/// stoppable by id (stop their job or their pool); their state follows
/// their job.
#[test]
fn item_07_workers_are_refused_by_lookup_and_show_their_jobs_stop() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().name("lk").max_threads(2).build().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let job = pool
            .spawn(move |cx| {
                tx.send(cx.id()).unwrap();
                while !r.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .unwrap();
        let worker = rx.recv().unwrap();
        assert!(
            registry::lookup(worker).is_none(),
            "a worker is not stoppable by id"
        );
        assert!(!job.cancel(), "running: its stop is requested");
        let state = registry::snapshot()
            .threads
            .into_iter()
            .find(|t| t.id == worker)
            .unwrap()
            .state;
        assert_eq!(state, ThreadState::Stopping);
        release.store(true, Ordering::SeqCst);
        job.join().unwrap();
    });
}

// ---- item 8 ---------------------------------------------------------------

/// A job on a worker the manager had just created was not recognised as
/// inside its own pool: `wait_idle` from it waited for itself.
#[test]
fn item_08_a_job_on_a_fresh_worker_knows_its_own_pool() {
    bounded(50 * SEC, || {
        for round in 0..300 {
            let pool = Arc::new(Pool::builder().min_idle(0).build().unwrap());
            // Takes the only worker; the second job queues and a fresh worker,
            // created for it, takes it on its first look at the queue.
            let first = pool
                .spawn(|_| std::thread::sleep(Duration::from_millis(3)))
                .unwrap();
            let p = pool.clone();
            let second = pool
                .spawn(move |_| p.wait_idle_timeout(Duration::from_secs(2)))
                .unwrap();
            first.join().unwrap();
            assert_eq!(second.join(), Ok(true), "round {round}: waited for itself");
        }
    });
}

// ---- item 9 ---------------------------------------------------------------

/// `pause()` kept blocking after another handle withdrew the request with
/// `resume()`.
#[test]
fn item_09_pause_returns_when_another_handle_resumes() {
    bounded(10 * SEC, || {
        // Never in a library wait or a pause point: it cannot pause.
        let t = threadward::spawn("never-pauses", |cx| {
            while !cx.should_stop() {
                std::thread::yield_now();
            }
        })
        .unwrap();
        let st = t.stopper();
        let p = st.clone();
        let pauser = std::thread::spawn(move || p.pause());
        // Resume until the pause returns: a resume that lands before the
        // pauser asked withdraws nothing (its pause is a new request), so
        // one resume after a sleep would hang on a loaded machine. A pause
        // deaf to resumes keeps this loop going until `bounded` fails it.
        while !pauser.is_finished() {
            st.resume();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!pauser.join().unwrap(), "it never paused");
        let start = Instant::now();
        assert!(!st.pause_timeout(Duration::from_millis(50)));
        assert!(start.elapsed() < SEC);
        t.stop().unwrap();
    });
}

// ---- item 10 --------------------------------------------------------------

/// A thread whose panic payload panics on drop was never marked finished.
#[test]
fn item_10_a_payload_that_panics_on_drop_still_finishes_the_thread() {
    bounded(10 * SEC, || {
        let t = threadward::spawn("bad-payload", |_| -> u32 {
            std::panic::panic_any(PanicOnDrop)
        })
        .unwrap();
        let st = t.stopper();
        assert!(st.wait_timeout(5 * SEC), "never marked finished");
        assert!(matches!(
            t.join(),
            Err(threadward::ThreadError::Panicked { .. })
        ));
    });
}

thread_local! {
    static SLOW_TLS: std::cell::RefCell<Option<SlowDrop>> = const { std::cell::RefCell::new(None) };
}

struct SlowDrop;

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `join_timeout(100 ms)` took 3.95 s when a thread-local destructor blocked.
#[test]
fn item_10_join_timeout_is_bounded_by_thread_local_destructors() {
    bounded(10 * SEC, || {
        // The clock starts once the body is about to return (a channel,
        // not a sleep: the thread may start late on a loaded machine); the
        // destructor then blocks 2 s, and the join must not wait for it.
        let (returning, rx) = std::sync::mpsc::channel::<()>();
        let t = threadward::spawn("slow-tls", move |_| {
            SLOW_TLS.with(|s| *s.borrow_mut() = Some(SlowDrop));
            returning.send(()).unwrap();
            5
        })
        .unwrap();
        rx.recv_timeout(5 * SEC).expect("the body ran");
        let start = Instant::now();
        let out = t.join_timeout(Duration::from_millis(500));
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(out.ok().map(|r| r.unwrap()), Some(5));
    });
}

// ---- item 11 --------------------------------------------------------------

/// `Job::join_timeout(Duration::MAX)` panicked (instant overflow).
#[test]
fn item_11_duration_max_is_accepted_everywhere() {
    bounded(10 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        let job = pool.spawn(|_| 3).unwrap();
        assert_eq!(job.join_timeout(Duration::MAX).ok(), Some(Ok(3)));
        assert!(pool.wait_idle_timeout(Duration::MAX));
        let t = threadward::spawn("max", |_| 4).unwrap();
        assert!(t.stopper().wait_timeout(Duration::MAX));
        assert_eq!(
            t.join_timeout(Duration::MAX).ok().map(|r| r.unwrap()),
            Some(4)
        );
        let t = threadward::spawn("max2", |cx| cx.sleep(Duration::MAX)).unwrap();
        assert_eq!(
            t.stop_timeout(Duration::MAX).ok().map(|r| r.unwrap()),
            Some(Err(Stopped))
        );
        assert!(pool.close(Duration::MAX).stragglers.is_empty());
        assert!(pool.shutdown(Duration::MAX).stragglers.is_empty());
    });
}

// ---- item 12 --------------------------------------------------------------

/// `shutdown(Duration::ZERO)` of an idle pool reported idle workers as
/// stragglers at random, and a second shutdown counted `stopped_running`
/// again.
#[test]
fn item_12_idle_workers_are_never_stragglers() {
    bounded(30 * SEC, || {
        for _ in 0..50 {
            let pool = Pool::builder().min_idle(3).build().unwrap();
            let report = pool.shutdown(Duration::ZERO);
            assert!(report.stragglers.is_empty(), "{report}");
        }
        let pool = Pool::builder().build().unwrap();
        let job = running_sleeper(&pool);
        assert_eq!(pool.shutdown(5 * SEC).stopped_running, 1);
        assert_eq!(pool.shutdown(5 * SEC).stopped_running, 0);
        job.join().unwrap().unwrap_err();
    });
}

/// Through `Stages`, a pool stage reported stragglers when an earlier undo
/// used up the group deadline although its workers were idle.
#[test]
fn item_12_a_pool_stage_with_idle_workers_is_clean_after_a_slow_undo() {
    bounded(30 * SEC, || {
        let mut stages = Stages::new("svc");
        stages
            .pool(
                "idle-pool",
                Duration::from_secs(1),
                Pool::builder().min_idle(3),
            )
            .unwrap();
        stages
            .start("slow", || {
                Ok::<_, std::io::Error>(((), || std::thread::sleep(Duration::from_millis(100))))
            })
            .unwrap();
        let report = stages.shutdown(Duration::from_millis(50));
        assert!(report.is_clean(), "{report}");
    });
}

// ---- item 13 --------------------------------------------------------------

/// `min_idle(usize::MAX).max_threads(usize::MAX)` was accepted and created
/// threads until the process aborted; `stack_size` was only checked when a
/// spare was created.
#[test]
fn item_13_absurd_sizes_are_invalid_input_at_build() {
    bounded(10 * SEC, || {
        let name = "absurd-sizes";
        let e = Pool::builder()
            .name(name)
            .min_idle(usize::MAX)
            .max_threads(usize::MAX)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let e = Pool::builder()
            .name(name)
            .min_idle(0)
            .stack_size(usize::MAX)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let e = Pool::builder().max_threads(usize::MAX).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            !registry::snapshot()
                .threads
                .iter()
                .any(|t| t.name.starts_with(name)),
            "a refused pool started threads"
        );
    });
}

// ---- item 16 --------------------------------------------------------------

/// A pool with a long name gave all workers (and its manager, now one
/// process-wide thread) the same OS name: the index was cut off.
#[test]
fn item_16_long_pool_names_keep_the_worker_index_visible() {
    bounded(10 * SEC, || {
        let pool = Pool::builder()
            .name("a-rather-long-pool-name")
            .min_idle(3)
            .build()
            .unwrap();
        let names = || -> Vec<String> {
            task_names()
                .into_iter()
                .filter(|n| n.starts_with("a-rather"))
                .collect()
        };
        // Each thread sets its OS name itself, as it starts.
        eventually(5 * SEC, "the OS names of 3 workers", || names().len() == 3);
        let names = names();
        for want in ["-0", "-1", "-2"] {
            assert!(
                names.iter().any(|n| n.ends_with(want)),
                "no OS name ending in {want}: {names:?}"
            );
        }
        assert!(names.iter().all(|n| n.len() <= 15), "{names:?}");
        drop(pool);
    });
}

// ---- item 17 --------------------------------------------------------------

/// The docs said `request_stop` returns `false` on an exited thread; the
/// code returned `true`. The docs now say what the code does: the first
/// request wins, also after exit (there is nothing left to wake).
#[test]
fn item_17_request_stop_after_exit_is_the_first_request() {
    let t = threadward::spawn("exited", |_| 1).unwrap();
    let st = t.stopper();
    st.wait().unwrap();
    assert!(st.request_stop());
    assert!(!st.request_stop());
    assert_eq!(t.stop().unwrap(), 1);
}

// ---- item 18 --------------------------------------------------------------

/// A worker counted a job only after waking its joiner, so `stats()` right
/// after `join` sometimes missed it (`pool_scale` failed 1 run in 7).
#[test]
fn item_18_stats_include_a_job_once_its_join_returned() {
    bounded(30 * SEC, || {
        let pool = Pool::builder().build().unwrap();
        for i in 1..=3000u64 {
            pool.spawn(|_| ()).unwrap().join().unwrap();
            let s = pool.stats();
            assert_eq!(s.completed, i, "after join #{i}: {s:?}");
        }
        for i in 1..=300u64 {
            let j = pool.spawn(|_| -> () { panic!("injected") }).unwrap();
            assert!(j.join().is_err());
            assert_eq!(pool.stats().panicked, i);
        }
    });
}
