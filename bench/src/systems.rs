//! The systems under comparison behind one interface: submit a boxed job.
//!
//! Every system gets the same `Box<dyn FnOnce()>` job, so the extra box
//! (a few tens of nanoseconds) is paid by all alike. Hand-rolled single-worker
//! pools give the dispatch floor.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A job as every system receives it.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

/// A system that runs jobs on other threads.
pub trait Exec: Send + Sync {
    /// Submits one job; it must run soon on some other thread.
    fn submit(&self, job: Task);
    /// Releases what finished jobs left behind (joins exited per-job threads).
    fn reap(&self) {}
    /// Most worker threads the system has had, where it tells.
    fn peak_threads(&self) -> Option<usize> {
        None
    }
    /// Tears the system down, waiting for its threads where it can.
    fn shutdown(self: Box<Self>);
}

/// Which system to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Hand-rolled: one parked worker fed through `Mutex<Option<job>>` + `unpark`.
    ParkWorker,
    /// Hand-rolled: `Mutex<VecDeque>` + `Condvar`, `notify_one` after unlocking.
    CondvarAfter,
    /// Hand-rolled: the same, `notify_one` under the lock.
    CondvarUnder,
    /// `threadward::Pool` with its defaults (concurrency-managed), jobs
    /// submitted without a hint.
    Threadward,
    /// The same pool, jobs submitted with `JobHint::MayBlock` (what a user
    /// who knows the jobs block writes).
    ThreadwardMayBlock,
    /// A pool with `Concurrency::Unlimited` (a thread per concurrent job).
    ThreadwardUnlimited,
    /// The default pool, jobs submitted with `Pool::execute` (no handle).
    ThreadwardExecute,
    /// tokio `spawn_blocking` with its default cap of 512 threads.
    Tokio,
    /// tokio `spawn_blocking` with `max_blocking_threads` raised to the need.
    TokioRaised,
    /// smol's `blocking::unblock` (global pool, cap 500).
    Smol,
    /// `threadpool::ThreadPool` with a fixed thread count.
    Threadpool,
    /// A new `std::thread` per job.
    StdThread,
}

/// smol's `blocking` default thread cap.
pub const SMOL_CAP: usize = 500;
/// tokio's default `max_blocking_threads`.
pub const TOKIO_CAP: usize = 512;

impl Kind {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ParkWorker => "floor: parked worker, Mutex<Option>+unpark",
            Kind::CondvarAfter => "ref: Mutex<VecDeque>+Condvar, notify after unlock",
            Kind::CondvarUnder => "ref: Mutex<VecDeque>+Condvar, notify under lock",
            Kind::Threadward => "threadward Pool::spawn",
            Kind::ThreadwardMayBlock => "threadward spawn_hinted(MayBlock)",
            Kind::ThreadwardUnlimited => "threadward Concurrency::Unlimited",
            Kind::ThreadwardExecute => "threadward Pool::execute",
            Kind::Tokio => "tokio spawn_blocking",
            Kind::TokioRaised => "tokio spawn_blocking (cap raised)",
            Kind::Smol => "smol blocking::unblock",
            Kind::Threadpool => "threadpool",
            Kind::StdThread => "std thread per job",
        }
    }

    /// A short label for charts.
    pub fn short(self) -> &'static str {
        match self {
            Kind::ParkWorker => "floor",
            Kind::CondvarAfter => "cv-after",
            Kind::CondvarUnder => "cv-under",
            Kind::Threadward => "threadward",
            Kind::ThreadwardMayBlock => "tw-mayblock",
            Kind::ThreadwardUnlimited => "tw-unlimited",
            Kind::ThreadwardExecute => "tw-execute",
            Kind::Tokio => "tokio",
            Kind::TokioRaised => "tokio+cap",
            Kind::Smol => "smol",
            Kind::Threadpool => "threadpool",
            Kind::StdThread => "std/job",
        }
    }

    /// Most jobs this system can run at once with the given sizing, if capped.
    pub fn cap(self) -> Option<usize> {
        match self {
            Kind::Tokio => Some(TOKIO_CAP),
            Kind::Smol => Some(SMOL_CAP),
            Kind::ParkWorker | Kind::CondvarAfter | Kind::CondvarUnder => Some(1),
            _ => None,
        }
    }

    /// Builds the system sized for `threads` concurrent jobs (pools that
    /// pre-create threads create that many).
    pub fn build(self, threads: usize) -> Box<dyn Exec> {
        match self {
            Kind::ParkWorker => Box::new(ParkWorker::new()),
            Kind::CondvarAfter => Box::new(CondvarQueue::new(false)),
            Kind::CondvarUnder => Box::new(CondvarQueue::new(true)),
            Kind::Threadward
            | Kind::ThreadwardMayBlock
            | Kind::ThreadwardUnlimited
            | Kind::ThreadwardExecute => {
                let mut b = threadward::Pool::builder()
                    .name("tw-bench")
                    .max_threads(threads.max(512) + 64);
                if self == Kind::ThreadwardUnlimited {
                    b = b.concurrency(threadward::Concurrency::Unlimited);
                }
                let hint = if self == Kind::ThreadwardMayBlock {
                    threadward::JobHint::MayBlock
                } else {
                    threadward::JobHint::Auto
                };
                Box::new(Tw {
                    pool: b.build().expect("threadward pool"),
                    hint,
                    execute: self == Kind::ThreadwardExecute,
                })
            }
            Kind::Tokio | Kind::TokioRaised => {
                let cap = if self == Kind::Tokio {
                    TOKIO_CAP
                } else {
                    threads.max(TOKIO_CAP) + 64
                };
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .max_blocking_threads(cap)
                    .build()
                    .expect("tokio runtime");
                Box::new(rt)
            }
            Kind::Smol => Box::new(Smol),
            Kind::Threadpool => Box::new(threadpool::ThreadPool::new(threads.max(1))),
            Kind::StdThread => Box::new(StdThread::default()),
        }
    }
}

/// A threadward pool and the hint its jobs are submitted with.
pub struct Tw {
    /// The pool.
    pub pool: threadward::Pool,
    /// The hint of every job.
    pub hint: threadward::JobHint,
    /// Submit with `Pool::execute` (no handle) instead of `spawn_hinted`.
    pub execute: bool,
}

impl Exec for Tw {
    fn submit(&self, job: Task) {
        if self.execute {
            self.pool
                .execute(move |_| job())
                .expect("threadward execute");
            return;
        }
        // Dropping the `Job` handle detaches it.
        drop(
            self.pool
                .spawn_hinted(self.hint, move |_| job())
                .expect("threadward spawn"),
        );
    }
    fn peak_threads(&self) -> Option<usize> {
        Some(self.pool.stats().peak)
    }
    fn shutdown(self: Box<Self>) {
        self.pool.shutdown(Duration::from_secs(10));
    }
}

impl Exec for tokio::runtime::Runtime {
    fn submit(&self, job: Task) {
        drop(self.spawn_blocking(job));
    }
    fn shutdown(self: Box<Self>) {
        self.shutdown_timeout(Duration::from_secs(10));
    }
}

/// smol's global blocking pool.
struct Smol;

impl Exec for Smol {
    fn submit(&self, job: Task) {
        // A dropped `Task` would cancel the job; detached it runs to the end.
        blocking::unblock(job).detach();
    }
    fn shutdown(self: Box<Self>) {}
}

impl Exec for threadpool::ThreadPool {
    fn submit(&self, job: Task) {
        self.execute(job);
    }
    fn peak_threads(&self) -> Option<usize> {
        Some(self.max_count())
    }
    fn shutdown(self: Box<Self>) {
        self.join();
        // Dropping the pool closes its channel; workers exit on their own.
    }
}

/// A new std thread per job; handles are kept and joined at shutdown.
#[derive(Default)]
struct StdThread {
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Exec for StdThread {
    fn submit(&self, job: Task) {
        let h = std::thread::spawn(job);
        self.handles.lock().unwrap().push(h);
    }
    fn reap(&self) {
        let done: Vec<_> = std::mem::take(&mut *self.handles.lock().unwrap());
        for h in done {
            let _ = h.join();
        }
    }
    fn shutdown(self: Box<Self>) {
        for h in self.handles.into_inner().unwrap() {
            let _ = h.join();
        }
    }
}

/// The dispatch floor: one parked worker, a one-job slot and `unpark`.
struct ParkWorker {
    shared: Arc<(Mutex<Option<Task>>, AtomicBool)>,
    worker: JoinHandle<()>,
}

impl ParkWorker {
    fn new() -> ParkWorker {
        let shared = Arc::new((Mutex::new(None::<Task>), AtomicBool::new(false)));
        let s = shared.clone();
        let worker = std::thread::spawn(move || loop {
            let job = s.0.lock().unwrap().take();
            match job {
                Some(job) => job(),
                None if s.1.load(Ordering::Acquire) => return,
                None => std::thread::park(),
            }
        });
        ParkWorker { shared, worker }
    }
}

impl Exec for ParkWorker {
    fn peak_threads(&self) -> Option<usize> {
        Some(1)
    }
    fn submit(&self, job: Task) {
        // One slot: the benchmark submits one job at a time.
        let prev = self.shared.0.lock().unwrap().replace(job);
        assert!(prev.is_none(), "ParkWorker holds one job at a time");
        self.worker.thread().unpark();
    }
    fn shutdown(self: Box<Self>) {
        self.shared.1.store(true, Ordering::Release);
        self.worker.thread().unpark();
        let _ = self.worker.join();
    }
}

/// A one-worker `Mutex<VecDeque>` + `Condvar` queue.
struct CondvarQueue {
    shared: Arc<CvShared>,
    under_lock: bool,
    worker: Option<JoinHandle<()>>,
}

struct CvShared {
    queue: Mutex<(VecDeque<Task>, bool)>,
    cv: Condvar,
}

impl CondvarQueue {
    fn new(under_lock: bool) -> CondvarQueue {
        let shared = Arc::new(CvShared {
            queue: Mutex::new((VecDeque::new(), false)),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let worker = std::thread::spawn(move || loop {
            let mut q = s.queue.lock().unwrap();
            let job = loop {
                if let Some(j) = q.0.pop_front() {
                    break j;
                }
                if q.1 {
                    return;
                }
                q = s.cv.wait(q).unwrap();
            };
            drop(q);
            job();
        });
        CondvarQueue {
            shared,
            under_lock,
            worker: Some(worker),
        }
    }
}

impl Exec for CondvarQueue {
    fn peak_threads(&self) -> Option<usize> {
        Some(1)
    }
    fn submit(&self, job: Task) {
        let mut q = self.shared.queue.lock().unwrap();
        q.0.push_back(job);
        if self.under_lock {
            self.shared.cv.notify_one();
            drop(q);
        } else {
            drop(q);
            self.shared.cv.notify_one();
        }
    }
    fn shutdown(mut self: Box<Self>) {
        self.shared.queue.lock().unwrap().1 = true;
        self.shared.cv.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
