//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threadward::{Context, Job, Pool, PoolStats, Stopped};

/// Runs `f` on a helper thread and fails the test if it does not finish
/// within `limit`: a hang becomes a failure instead of a stalled CI job.
pub fn bounded<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .name("bounded-test".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(r) => {
            h.join().unwrap();
            r
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: surface its panic.
            match h.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("sender dropped without sending"),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("test did not finish within {limit:?} (hang?)")
        }
    }
}

/// A gate the test opens: the thread or job that waits at it ignores its
/// stop meanwhile (a std channel, which no stop reaches), so the test, not
/// a sleep's length, decides how long it goes on. It waits at most 20 s,
/// so a test that never opens it fails by its own bound, not by a hang.
pub fn gate() -> (Opener, Gate) {
    let (tx, rx) = std::sync::mpsc::channel();
    (Opener(tx), Gate(rx))
}

/// The test's side of a [`gate`].
pub struct Opener(std::sync::mpsc::Sender<()>);

impl Opener {
    /// Lets the waiter go on.
    pub fn open(&self) {
        let _ = self.0.send(());
    }
}

/// The waiter's side of a [`gate`].
pub struct Gate(std::sync::mpsc::Receiver<()>);

impl Gate {
    /// Waits until the gate opens (at most 20 s).
    pub fn wait(&self) {
        let _ = self.0.recv_timeout(Duration::from_secs(20));
    }
}

/// Polls `cond` every millisecond until it holds; panics after `limit`.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Number of OS threads in this process.
pub fn task_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Names (comm) of this process's OS threads.
pub fn task_names() -> Vec<String> {
    tasks(|_| true)
}

/// Names (comm) of this process's OS threads that are alive: a thread
/// whose exit is past the point where a joiner returns (the kernel
/// cleared its tid and woke the joiner) can stay listed a few
/// microseconds more, as a zombie (`Z`) or dead (`X`) task; it runs
/// nothing and is not counted.
pub fn live_task_names() -> Vec<String> {
    tasks(|state| !matches!(state, 'Z' | 'X'))
}

/// Names of the tasks whose scheduler state passes `keep`, all at one
/// instant. A walk reads the tasks one after another, so a thread read
/// alive early in it may have exited, been joined and replaced before a
/// later one is read: both would be counted although never alive at once.
/// So every task is read twice, the second time after the whole first
/// pass: one alive at both reads was alive throughout, in particular when
/// each other kept task was read alive.
fn tasks(keep: impl Fn(char) -> bool) -> Vec<String> {
    let alive = |dir: &std::path::Path| {
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        keep(state).then_some(())
    };
    let first: Vec<(std::path::PathBuf, String)> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            alive(&dir)?;
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            Some((dir, name.trim_end().to_owned()))
        })
        .collect();
    first
        .into_iter()
        .filter_map(|(dir, name)| alive(&dir).map(|()| name))
        .collect()
}

pub const SEC: Duration = Duration::from_secs(1);
pub const HOUR: Duration = Duration::from_secs(3600);

/// Submits `f` to `pool` and returns once the job has started running.
pub fn spawn_started<T: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&Context) -> T + Send + 'static,
) -> Job<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let job = pool
        .spawn(move |cx| {
            tx.send(()).unwrap();
            f(cx)
        })
        .unwrap();
    rx.recv_timeout(5 * SEC).expect("job did not start");
    job
}

/// A running job blocked in a stop-aware hour-long sleep.
pub fn running_sleeper(pool: &Pool) -> Job<Result<(), Stopped>> {
    spawn_started(pool, |cx| cx.sleep(HOUR))
}

/// A running job that ignores its stop (a foreign wait the pool cannot
/// see) until the returned flag is set.
pub fn spawn_stubborn(pool: &Pool) -> Arc<AtomicBool> {
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    spawn_started(pool, move |_| {
        while !r.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    release
}

/// Runs `f` inside a job of `pool` that has been handed its own `Job`
/// handle (for self-join and self-stop misuse tests); returns what `f`
/// returned.
pub fn with_own_job<R: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&Context, Job<()>) -> R + Send + 'static,
) -> R {
    let (tx, rx) = crossbeam_channel::bounded::<Job<()>>(1);
    let (out_tx, out_rx) = crossbeam_channel::bounded(1);
    let job = pool
        .spawn(move |cx| {
            let me = cx.recv(&rx).unwrap();
            let _ = out_tx.send(f(cx, me));
        })
        .unwrap();
    tx.send(job).unwrap();
    out_rx
        .recv_timeout(5 * SEC)
        .expect("job did not report back")
}

/// Submits `n` jobs that all wait on one barrier with the caller, so they
/// must run at once; returns when every one has run and ended.
pub fn run_together(pool: &Pool, n: usize) {
    let gate = Arc::new(std::sync::Barrier::new(n + 1));
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let g = gate.clone();
            pool.spawn(move |_| {
                g.wait();
            })
            .unwrap()
        })
        .collect();
    gate.wait();
    for j in jobs {
        j.join().unwrap();
    }
}

/// The pool's stats identity: every accepted job is in exactly one place.
pub fn identity_holds(s: &PoolStats) -> bool {
    s.submitted == s.completed + s.panicked + s.cancelled + s.busy as u64 + s.queued as u64
}
