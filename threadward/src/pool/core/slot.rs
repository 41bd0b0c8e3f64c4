//! What the pool state keeps per worker (README.md: "Worker states"): the job
//! it runs, the user code it still runs after that job ended, its ticket
//! and its thread's handle.

use std::hash::Hasher;
use std::sync::Arc;
use std::time::Instant;

use super::state::{Class, JobHint};
use crate::record::ThreadRecord;
use crate::stop::{HasStop, StopSource};
use crate::sync::Condvar;

/// The job a worker runs right now.
pub(crate) struct Current {
    pub(crate) job: u64,
    /// The job's stop state, reached without keeping the job alive.
    pub(crate) stop: Option<std::sync::Weak<dyn HasStop>>,
    pub(crate) started: Instant,
    pub(crate) hint: JobHint,
    /// Depth of library waits and `blocking` sections the job is in.
    pub(crate) blocked: u32,
    /// The monitor found it blocked (or hogging a CPU) and no longer
    /// counts it as running.
    pub(crate) compensated: bool,
    /// The watchdog reported it (once per job).
    pub(crate) overdue: bool,
    /// Its kind (learned hints), if it has one.
    pub(crate) kind: Option<super::learn::KindKey>,
    /// It runs as `MayBlock` because its kind was learned to block.
    pub(crate) learned: bool,
    /// The monitor found it blocked (its kind's run blocked).
    pub(crate) blocked_seen: bool,
    /// Its compensation now is for hogging a CPU (never re-counted).
    pub(crate) hog: bool,
}

impl Current {
    /// Whether the job counts in `State::running` now.
    pub(crate) fn in_running(&self) -> bool {
        self.hint != JobHint::MayBlock && self.blocked == 0 && !self.compensated
    }
    /// The job's stop state, made now if the job made none. Called under
    /// the pool lock only: while the job is current its worker holds it,
    /// so the reference taken here is never the last one (a detached
    /// job's value is never dropped by this).
    pub(crate) fn stop_source(&self) -> Option<StopSource> {
        let job = self.stop.as_ref()?.upgrade()?;
        let source = job.stop().source().clone();
        drop(job);
        Some(source)
    }
    /// Whether the job's stop was requested (makes no stop state).
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
            .is_some_and(|job| job.stop().requested())
    }
    /// Whether the monitor may compensate it.
    pub(crate) fn watched(&self) -> bool {
        self.hint == JobHint::Auto
    }
}

/// A job whose closure returned, while its worker still runs its user code
/// (the waker, the drop of a detached value): kept so a shutdown report
/// names it (README.md: "Invariants", I6).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finishing {
    pub(crate) job: u64,
    pub(crate) started: Instant,
}

/// Worker numbers are small, distinct, increasing integers we assign: the
/// map of workers hashes them with one multiplication (Fibonacci hashing)
/// instead of SipHash, which showed as 4 % of a tiny job's cost.
#[derive(Default)]
pub(crate) struct WorkerNoHasher(u64);

impl Hasher for WorkerNoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Why a parked worker was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// Claimed for a job of this class (a promise, counted in `notify`).
    Job(Class),
    /// Reaped by the manager's idle timer.
    Reap,
}

/// A thread's join handle, whichever thread type made it (the pool's
/// workers, `pool::worker::OsThread`; loom's and shuttle's threads in the
/// models, so the models run the same exit-and-join protocol).
pub(crate) trait Joinable: Send {
    /// Waits for the thread's exit to end.
    fn join(self: Box<Self>);
    /// Whether the OS thread is gone, so `join` returns at once. Only the
    /// thread that left joins without asking (it joins its predecessor);
    /// the manager, a submitter and a shutdown ask first: a job's
    /// thread-local destructor may block a thread's exit for ever, and
    /// must not block them.
    fn has_ended(&self) -> bool;
    /// Waits at most `timeout` for the thread's exit to end; whether it
    /// did (then `join` returns at once). Where the OS cannot wait for one
    /// thread's end, it only asks (`has_ended`).
    fn wait_ended(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        self.has_ended()
    }
}

#[cfg(any(loom, shuttle))]
impl Joinable for crate::sync::thread::JoinHandle<()> {
    fn join(self: Box<Self>) {
        let _ = crate::sync::thread::JoinHandle::join(*self);
    }
    fn has_ended(&self) -> bool {
        true // the models have no time: a join is the wait
    }
}

/// A thread that left the pool, to be joined.
pub(crate) type ExitHandle = Box<dyn Joinable>;

/// Where a worker's join handle is.
#[derive(Default)]
pub(crate) enum Handle {
    /// Thread creation has not returned yet.
    #[default]
    Pending,
    Held(ExitHandle),
    /// Dropped by a shutdown (a straggler): nobody joins it.
    Detached,
}

/// One worker thread as the pool knows it.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    pub(crate) handle: Handle,
    pub(crate) rec: Option<Arc<ThreadRecord>>,
    pub(crate) current: Option<Current>,
    /// The previous job, while the worker may still run its user code.
    pub(crate) finishing: Option<Finishing>,
    /// The worker's own parking primitive (waits with the pool lock): a
    /// wake-up reaches exactly the worker it is meant for.
    pub(crate) cv: Arc<Condvar>,
    /// Granted while parked, consumed by the worker.
    pub(crate) ticket: Option<Ticket>,
    /// Reserved by a submitter for a job of this class and not started yet
    /// (counted in `State::coming`): it holds a promise.
    pub(crate) coming: Option<Class>,
    /// Its last job came after a park (not straight after another job):
    /// it does not spin before parking again (a lone job is not a burst).
    pub(crate) after_park: bool,
}

impl WorkerSlot {
    /// The worker's job and thread id while the job's closure runs (the
    /// worker's record names the job): only then is the worker in user
    /// code, where a sleep is the job's own (README.md: "The monitor").
    pub(crate) fn in_closure(&self) -> Option<(&Current, i32)> {
        let c = self.current.as_ref()?;
        let rec = self.rec.as_ref()?;
        if rec.job() != Some(c.job) {
            return None;
        }
        Some((c, *rec.tid.get()?))
    }

    /// Whether job `job`'s closure may still run on this worker: its
    /// record names the job (the models' workers have no record: their
    /// current job counts). A worker that left the closure and waits for
    /// the pool lock to report is asleep, but not in the job's code.
    pub(crate) fn closure_runs(&self, job: u64) -> bool {
        match &self.rec {
            Some(rec) => rec.job() == Some(job),
            None => true,
        }
    }
}
