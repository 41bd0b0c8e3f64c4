//! Panic injection (issue 10): a panic at every point where user code runs
//! on a library thread or inside a library call, one point at a time, over
//! pools, managed threads and stages.
//!
//! Checked for every point: nothing hangs (each case is time-bounded),
//! every job resolves exactly once with an outcome that matches how often
//! its closure ran, the pool's counts add up (`submitted = completed +
//! panicked + cancelled + busy + queued`), every deadline-taking call
//! returns by its deadline (plus a margin for a loaded machine), and the
//! process's threads are back to the baseline at the end.
//!
//! Its own `main` (`harness = false`), so that the thread count is not
//! disturbed by libtest's threads; cases run one after another.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use common::{bounded, eventually, task_count, HOUR, SEC};
use threadward::{Context, Job, JobError, Pool, Stages, StopSource, Stopped};

/// Where the panic is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// The job's closure panics.
    Closure,
    /// The closure's captures panic when dropped (after running, or when
    /// it never runs: cancelled, shut down).
    ClosureDrop,
    /// The job's value panics when dropped (detached jobs drop it on the
    /// worker).
    ValueDrop,
    /// The closure panics with a payload that panics when dropped.
    PayloadDrop,
    /// The `Waker` of a job polled as a future panics.
    Waker,
    /// A stop callback registered by the job panics.
    StopCallback,
}

const POINTS: [Point; 6] = [
    Point::Closure,
    Point::ClosureDrop,
    Point::ValueDrop,
    Point::PayloadDrop,
    Point::Waker,
    Point::StopCallback,
];

/// Panics when dropped, unless already unwinding.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("injected: drop");
        }
    }
}

struct BombWaker;

impl Wake for BombWaker {
    fn wake(self: Arc<Self>) {
        panic!("injected: waker");
    }
}

/// Slack for a loaded CI machine on top of a deadline.
const SLACK: Duration = Duration::from_millis(700);

/// The job body for `point`: what it does when it runs. `runs` counts
/// executions of this job's closure.
fn job_body(
    point: Point,
    i: usize,
    runs: Arc<AtomicUsize>,
) -> impl FnOnce(&Context) -> Option<Bomb> + Send + 'static {
    let capture = (point == Point::ClosureDrop).then(|| Bomb);
    move |cx: &Context| {
        let _keep = &capture;
        runs.fetch_add(1, Ordering::SeqCst);
        let _cb = (point == Point::StopCallback)
            .then(|| cx.token().on_stop(|| panic!("injected: callback")));
        match point {
            Point::Closure if i % 2 == 0 => panic!("injected: closure"),
            Point::PayloadDrop if i % 2 == 0 => std::panic::panic_any(Bomb),
            _ => {}
        }
        // Every third job blocks until stopped (so shutdown has running
        // jobs to stop); the rest return at once.
        if i % 3 == 0 {
            let _ = cx.sleep(HOUR);
        }
        (point == Point::ValueDrop).then(|| Bomb)
    }
}

fn pool_case(point: Point) {
    let pool = Pool::builder()
        .name(format!("inj-{point:?}"))
        .max_threads(6)
        .min_idle(1)
        .build()
        .unwrap();
    let n = 60;
    let runs: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut joined: Vec<(usize, Job<Option<Bomb>>)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let mut job = pool.spawn(job_body(point, i, r.clone())).unwrap();
        if point == Point::Waker {
            let waker = Waker::from(Arc::new(BombWaker));
            let mut tcx = std::task::Context::from_waker(&waker);
            let _ = std::future::Future::poll(std::pin::Pin::new(&mut job), &mut tcx);
        }
        match i % 5 {
            // Detached: the worker drops what it returns.
            0 => drop(job),
            // Cancelled: queued ones never run, running ones are stopped.
            1 => {
                job.cancel();
                joined.push((i, job));
            }
            _ => joined.push((i, job)),
        }
    }
    let stats_add_up = |what: &str| {
        let s = pool.stats();
        assert_eq!(
            s.submitted,
            s.completed + s.panicked + s.cancelled + s.busy as u64 + s.queued as u64,
            "{point:?} {what}: {s:?}"
        );
    };
    stats_add_up("after submitting");
    // Let the pool get going, so shutdown meets finished, running and
    // queued jobs alike.
    eventually(10 * SEC, "every thread busy with a blocking job", || {
        let s = pool.stats();
        s.busy == 6 || s.queued == 0
    });
    let deadline = Duration::from_millis(500);
    let start = Instant::now();
    let report = pool.shutdown(deadline);
    let took = start.elapsed();
    assert!(took < deadline + SLACK, "{point:?}: shutdown took {took:?}");
    assert!(report.stragglers.is_empty(), "{point:?}: {report}");
    stats_add_up("after shutdown");
    let s = pool.stats();
    assert_eq!((s.busy, s.queued), (0, 0), "{point:?}: {s:?}");
    // Every job resolves exactly once, consistently with its runs.
    for (i, job) in joined {
        let out = job
            .join_timeout(5 * SEC)
            .unwrap_or_else(|_| panic!("{point:?}: job {i} never resolved"));
        let ran = runs[i].load(Ordering::SeqCst);
        match &out {
            Ok(_) => assert_eq!(ran, 1, "{point:?}: job {i}"),
            Err(JobError::Panicked { .. }) => assert_eq!(ran, 1, "{point:?}: job {i}"),
            Err(JobError::Cancelled | JobError::ShutDown) => {
                assert_eq!(ran, 0, "{point:?}: job {i}")
            }
            Err(e) => panic!("{point:?}: job {i}: {e}"),
        }
        // The value (possibly a Bomb) drops here, on this thread: that is
        // the caller's own code, outside the library.
        std::mem::forget(out);
    }
    for (i, r) in runs.iter().enumerate() {
        assert!(
            r.load(Ordering::SeqCst) <= 1,
            "{point:?}: job {i} ran twice"
        );
    }
    let s = pool.stats();
    assert!(
        s.panicked > 0 || !matches!(point, Point::Closure | Point::PayloadDrop),
        "{point:?}: the injection never fired: {s:?}"
    );
    drop(pool);
}

fn pools_survive_a_panic_at_every_user_code_point() {
    for point in POINTS {
        bounded(30 * SEC, move || pool_case(point));
    }
}

fn threads_survive_a_panic_at_every_user_code_point() {
    bounded(30 * SEC, || {
        // The body panics; its payload panics on drop.
        let t =
            threadward::spawn("inj-payload", |_| -> u8 { std::panic::panic_any(Bomb) }).unwrap();
        assert!(t.stopper().wait_timeout(5 * SEC));
        assert!(t.join().is_err());
        // A detached thread's value panics on drop (on the thread itself).
        let t = threadward::spawn("inj-value", |_| Bomb).unwrap();
        let st = t.stopper();
        t.detach();
        assert!(st.wait_timeout(5 * SEC));
        // Stop callbacks panic: stop, stop_timeout and stop_all still
        // return, by their deadlines, with every value.
        let make = |i: usize| {
            threadward::spawn(format!("inj-cb-{i}"), move |cx| {
                let _a = cx.token().on_stop(|| panic!("injected: callback a"));
                let _b = cx.token().on_stop(|| panic!("injected: callback b"));
                let _ = cx.sleep(HOUR);
                i
            })
            .unwrap()
        };
        assert_eq!(make(0).stop().unwrap(), 0);
        let start = Instant::now();
        let out = make(1).stop_timeout(Duration::from_millis(500));
        assert!(start.elapsed() < Duration::from_millis(500) + SLACK);
        assert_eq!(out.ok().map(|r| r.unwrap()), Some(1));
        let all: Vec<usize> = threadward::stop_all((2..8).map(make))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all, (2..8).collect::<Vec<_>>());
        // A bare stop source with panicking callbacks.
        let src = StopSource::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let _g: Vec<_> = (0..4)
            .map(|k| {
                let h = hits.clone();
                src.token().on_stop(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    if k % 2 == 0 {
                        panic!("injected: callback {k}");
                    }
                })
            })
            .collect();
        assert!(src.request_stop());
        assert_eq!(hits.load(Ordering::SeqCst), 4);
    });
}

fn stages_survive_panicking_callbacks_within_their_deadline() {
    bounded(30 * SEC, || {
        let mut stages = Stages::new("inj");
        stages
            .thread("inj-thread", Duration::from_millis(300), || {
                threadward::spawn("inj-stage-t", |cx| {
                    let _g = cx.token().on_stop(|| panic!("injected: callback"));
                    cx.sleep(HOUR)
                })
            })
            .unwrap();
        let pool = stages
            .pool(
                "inj-pool",
                Duration::from_millis(300),
                Pool::builder().name("inj-stage-p"),
            )
            .unwrap();
        let job = pool
            .spawn(|cx| {
                let _g = cx.token().on_stop(|| panic!("injected: callback"));
                cx.sleep(HOUR)
            })
            .unwrap();
        drop(pool);
        let deadline = Duration::from_secs(1);
        let start = Instant::now();
        let report = stages.shutdown(deadline);
        assert!(
            start.elapsed() < deadline + SLACK,
            "took {:?}",
            start.elapsed()
        );
        assert!(report.is_clean(), "{report}");
        assert!(matches!(
            job.join_timeout(5 * SEC).ok(),
            Some(Ok(Err(Stopped)) | Err(JobError::ShutDown))
        ));
    });
}

fn main() {
    // Injected panics print through the default hook; keep the output
    // readable by printing one line per contained panic instead.
    let injected = Arc::new(AtomicUsize::new(0));
    let seen = injected.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| p.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        if msg.starts_with("injected") || p.is::<Bomb>() {
            seen.fetch_add(1, Ordering::SeqCst);
        } else {
            default(info);
        }
    }));
    let baseline = task_count();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: [(&str, fn()); 3] = [
        (
            "pools_survive_a_panic_at_every_user_code_point",
            pools_survive_a_panic_at_every_user_code_point,
        ),
        (
            "threads_survive_a_panic_at_every_user_code_point",
            threads_survive_a_panic_at_every_user_code_point,
        ),
        (
            "stages_survive_panicking_callbacks_within_their_deadline",
            stages_survive_panicking_callbacks_within_their_deadline,
        ),
    ];
    let mut ran = 0;
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let start = Instant::now();
        case();
        ran += 1;
        println!("test {name} ... ok ({:.2?})", start.elapsed());
    }
    eventually(20 * SEC, "threads back to baseline", || {
        task_count() <= baseline
    });
    println!(
        "test result: ok. {ran} passed ({} injected panics contained)",
        injected.load(Ordering::SeqCst)
    );
}
