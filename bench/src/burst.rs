//! Scenarios 3, 5 and 6: bursts of jobs that block until all run (cold and
//! warm), throughput of tiny jobs, and scale (10 000 blocked jobs with RSS).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::systems::{Exec, Kind};
use crate::util::{ms, rss_kib, settle_threads, thread_count, wait_for};

/// How long a burst may take before it is reported as a timeout.
const BURST_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared state of one burst: a counter of running jobs and a release.
struct Gate {
    n: usize,
    running: Mutex<(usize, bool)>,
    cv: Condvar,
    all_running: Mutex<Option<Instant>>,
    finished: AtomicUsize,
}

impl Gate {
    fn new(n: usize) -> Arc<Gate> {
        Arc::new(Gate {
            n,
            running: Mutex::new((0, false)),
            cv: Condvar::new(),
            all_running: Mutex::new(None),
            finished: AtomicUsize::new(0),
        })
    }

    /// The job body: count in, then block until released. With
    /// `self_release`, the last job to arrive releases everyone.
    fn job(self: &Arc<Gate>, self_release: bool) -> Box<dyn FnOnce() + Send> {
        let g = self.clone();
        Box::new(move || {
            let mut st = g.running.lock().unwrap();
            st.0 += 1;
            if st.0 == g.n {
                *g.all_running.lock().unwrap() = Some(Instant::now());
                if self_release {
                    st.1 = true;
                }
                g.cv.notify_all();
            }
            while !st.1 {
                st = g.cv.wait(st).unwrap();
            }
            drop(st);
            g.finished.fetch_add(1, Ordering::Release);
        })
    }

    fn release(&self) {
        self.running.lock().unwrap().1 = true;
        self.cv.notify_all();
    }

    /// Waits until all jobs run; the instant the last one arrived.
    fn wait_all_running(&self) -> Option<Instant> {
        let end = Instant::now() + BURST_TIMEOUT;
        let mut st = self.running.lock().unwrap();
        while st.0 < self.n {
            let now = Instant::now();
            if now >= end {
                return None;
            }
            st = self.cv.wait_timeout(st, end - now).unwrap().0;
        }
        drop(st);
        *self.all_running.lock().unwrap()
    }

    fn wait_finished(&self) -> bool {
        wait_for(BURST_TIMEOUT, || {
            self.finished.load(Ordering::Acquire) == self.n
        })
    }
}

/// One burst on `exec`: submit `n` gate jobs from `t0`; the time until all
/// run, in ms (`None` on timeout). Waits for the jobs to finish.
fn one_burst(exec: &dyn Exec, n: usize, t0: Instant) -> Option<f64> {
    let gate = Gate::new(n);
    for _ in 0..n {
        exec.submit(gate.job(true));
    }
    let all = gate.wait_all_running();
    if all.is_none() {
        gate.release();
    }
    gate.wait_finished();
    all.map(|t| ms(t.saturating_duration_since(t0)))
}

/// Cold and warm burst times of one repetition, in ms; `Err` says why
/// there is no number ("timeout", or "n/a" for a cold burst that cannot be
/// cold).
#[derive(Debug, Clone, Copy)]
pub struct BurstRep {
    /// Fresh pool (the clock starts before it is built).
    pub cold: Result<f64, &'static str>,
    /// Second burst on the same pool.
    pub warm: Result<f64, &'static str>,
}

/// Most threads smol's global pool has had so far: blocking 1.7 keeps idle
/// threads while it is under its cap, so it is cold only up to this size.
static SMOL_GROWN: AtomicUsize = AtomicUsize::new(0);

/// One cold + warm burst repetition of `n` jobs on a fresh `kind` system.
pub fn burst(kind: Kind, n: usize) -> BurstRep {
    let base_threads = thread_count();
    let t0 = Instant::now();
    let exec = kind.build(n);
    let mut cold = one_burst(exec.as_ref(), n, t0).ok_or("timeout");
    if kind == Kind::Smol && SMOL_GROWN.fetch_max(n, Ordering::Relaxed) >= n {
        cold = Err("n/a");
    }
    thread::sleep(Duration::from_millis(5));
    let warm = one_burst(exec.as_ref(), n, Instant::now()).ok_or("timeout");
    exec.shutdown();
    if kind != Kind::Smol {
        settle_threads(base_threads, Duration::from_secs(5));
    }
    BurstRep { cold, warm }
}

/// The result of one scale run: time to reach `n` blocked jobs and RSS.
#[derive(Debug, Clone, Copy)]
pub struct ScaleRep {
    /// ms from before the build until all `n` jobs ran (`None`: timeout).
    pub reach_ms: Option<f64>,
    /// RSS growth per running job, KiB.
    pub rss_per_thread_kib: f64,
}

/// `n` jobs blocked at once on a fresh `kind` system, held until measured.
pub fn scale(kind: Kind, n: usize) -> ScaleRep {
    let base_threads = thread_count();
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let exec = kind.build(n);
    let gate = Gate::new(n);
    for _ in 0..n {
        exec.submit(gate.job(false));
    }
    let all = gate.wait_all_running();
    thread::sleep(Duration::from_millis(20));
    let rss1 = rss_kib();
    gate.release();
    gate.wait_finished();
    exec.shutdown();
    settle_threads(base_threads, Duration::from_secs(10));
    ScaleRep {
        reach_ms: all.map(|t| ms(t.saturating_duration_since(t0))),
        rss_per_thread_kib: rss1.saturating_sub(rss0) as f64 / n as f64,
    }
}

/// What each job of a throughput run does.
#[derive(Clone, Copy)]
pub enum Work<'a> {
    /// Adds one to a counter.
    Tiny,
    /// `std::fs::metadata` of one of these files (a syscall, no block on
    /// a warm cache), then adds one.
    Metadata(&'a MetadataFiles),
}

/// A directory of small files for the metadata jobs, removed on drop.
pub struct MetadataFiles {
    dir: std::path::PathBuf,
    paths: Arc<Vec<std::path::PathBuf>>,
}

impl MetadataFiles {
    /// 256 empty files in a fresh temporary directory.
    pub fn create() -> MetadataFiles {
        let dir = std::env::temp_dir().join(format!("threadward-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench temp dir");
        let paths: Vec<_> = (0..256)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, b"").expect("bench temp file");
                p
            })
            .collect();
        MetadataFiles {
            dir,
            paths: Arc::new(paths),
        }
    }
}

impl Drop for MetadataFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Completed jobs per second for `total` jobs doing `work`, submitted from
/// `submitters` threads to a fresh (then warmed) `kind` system, and the
/// most threads it used where it tells.
pub fn throughput(
    kind: Kind,
    total: usize,
    submitters: usize,
    work: Work<'_>,
) -> (Option<f64>, Option<usize>) {
    let base_threads = thread_count();
    let exec = kind.build(2);
    let done = Arc::new(AtomicUsize::new(0));
    let stop_flag = AtomicBool::new(false);
    let paths = match work {
        Work::Tiny => None,
        Work::Metadata(files) => Some(files.paths.clone()),
    };
    let job = |i: usize| -> Box<dyn FnOnce() + Send> {
        let d = done.clone();
        match &paths {
            None => Box::new(move || {
                d.fetch_add(1, Ordering::Relaxed);
            }),
            Some(paths) => {
                let paths = paths.clone();
                Box::new(move || {
                    let _ = std::hint::black_box(std::fs::metadata(&paths[i % paths.len()]));
                    d.fetch_add(1, Ordering::Relaxed);
                })
            }
        }
    };
    // Warm-up so lazily created threads exist.
    for i in 0..100 {
        exec.submit(job(i));
    }
    wait_for(BURST_TIMEOUT, || done.load(Ordering::Relaxed) == 100);
    done.store(0, Ordering::Relaxed);
    let per = total / submitters;
    let t0 = Instant::now();
    thread::scope(|s| {
        for k in 0..submitters {
            let (exec, job, stop_flag) = (&exec, &job, &stop_flag);
            s.spawn(move || {
                for i in 0..per {
                    if stop_flag.load(Ordering::Relaxed) {
                        return;
                    }
                    exec.submit(job(k * per + i));
                }
            });
        }
    });
    let want = per * submitters;
    let ok = wait_for(Duration::from_secs(60), || {
        done.load(Ordering::Relaxed) >= want
    });
    let dt = t0.elapsed();
    stop_flag.store(true, Ordering::Relaxed);
    let peak = exec.peak_threads();
    exec.shutdown();
    settle_threads(base_threads, Duration::from_secs(5));
    (ok.then(|| want as f64 / dt.as_secs_f64()), peak)
}
