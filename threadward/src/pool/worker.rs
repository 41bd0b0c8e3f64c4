//! A pool's worker threads: creation, and what a worker does besides the
//! protocol of `core/` (README.md: "Worker states").

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use super::core::{Core, Joinable, Report, WorkerSide};
use super::job::Task;
use crate::record::{ThreadRecord, ThreadState};
use crate::thread::{spawn_worker, BlockHook};

/// What a worker needs to know of its pool.
#[derive(Clone)]
pub(crate) struct PoolRef {
    pub(crate) core: Arc<Core<Task>>,
    pub(crate) name: Arc<str>,
    /// Process-unique key of the pool (its workers carry it).
    pub(crate) key: u64,
    pub(crate) stack_size: usize,
}

thread_local! {
    /// On a worker: its pool's key and its number in that pool.
    static WORKER: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// The caller's worker number, if it is a worker of the pool `key`.
pub(crate) fn current_worker(key: u64) -> Option<u64> {
    WORKER
        .with(Cell::get)
        .and_then(|(k, no)| (k == key).then_some(no))
}

/// Creates worker `no` (already reserved in the core) and records it. On
/// error the reservation stands: the caller undoes it (`spawn_failed`, or
/// `withdraw` together with its job).
pub(crate) fn start_worker(pool: &PoolRef, no: u64) -> io::Result<()> {
    let c = pool.core.clone();
    let key = pool.key;
    let (rec, handle) = spawn_worker(pool.name.clone(), no, Some(pool.stack_size), move |rec| {
        WORKER.with(|w| w.set(Some((key, no))));
        let hook: Option<Arc<dyn BlockHook>> = c.cfg.target.map(|_| {
            Arc::new(Hook {
                core: c.clone(),
                no,
            }) as Arc<dyn BlockHook>
        });
        c.work(
            no,
            &Shipped {
                core: &c,
                rec,
                hook,
            },
        );
    })?;
    let thread = OsThread {
        handle,
        rec: rec.clone(),
    };
    pool.core.spawned(no, Some(rec), Box::new(thread));
    Ok(())
}

/// A worker's OS thread, as the exit chain joins it.
struct OsThread {
    handle: std::thread::JoinHandle<()>,
    rec: Arc<ThreadRecord>,
}

impl Joinable for OsThread {
    fn join(self: Box<Self>) {
        let _ = self.handle.join();
    }

    /// Gone from `/proc/self/task`: its exit, thread-local destructors
    /// included, has ended. (`JoinHandle::is_finished` turns true when the
    /// body returned, before those destructors run.)
    fn has_ended(&self) -> bool {
        match self.rec.tid.get() {
            Some(tid) => !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists(),
            None => false,
        }
    }

    /// Through a pidfd of the thread (`PIDFD_THREAD`, Linux 6.9), which
    /// turns readable when the thread has exited. Where the kernel has no
    /// thread pidfds it only asks.
    fn wait_ended(&self, timeout: std::time::Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        /// `PIDFD_THREAD` (= `O_EXCL`): a pidfd for one thread.
        const PIDFD_THREAD: u32 = 0o200;
        let Some(pid) = self.rec.tid.get().and_then(|&t| Pid::from_raw(t)) else {
            return false;
        };
        let fd = match pidfd_open(pid, PidfdFlags::from_bits_retain(PIDFD_THREAD)) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return true, // gone already
            Err(_) => return self.has_ended(),
        };
        let timeout = Timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, Some(&timeout)) {
                Ok(n) => return n > 0,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return self.has_ended(),
            }
        }
    }
}

/// The shipped worker's side: runs `Task`s, keeps the registry informed.
struct Shipped<'a> {
    core: &'a Core<Task>,
    rec: &'a Arc<ThreadRecord>,
    hook: Option<Arc<dyn BlockHook>>,
}

impl WorkerSide<Task> for Shipped<'_> {
    fn run(&self, task: Task, report: Report<'_>) {
        // `run` reports the outcome before the joiner wakes, and never
        // unwinds.
        task.run(self.rec, self.hook.as_ref(), report);
    }

    fn set_idle(&self, idle: bool) {
        self.rec.set_state(if idle {
            ThreadState::Idle
        } else {
            ThreadState::Running
        });
    }

    fn took(&self) {
        if self.core.take_saturation() {
            super::monitor::poke();
        }
    }

    fn leaving(&self) {
        // Leave the registry before the pool counts us gone, so that once a
        // shutdown saw no worker left, none of the pool is listed any more.
        crate::record::release(self.rec.id);
    }
}

/// A worker's report of its job's blocking waits to the pool.
struct Hook {
    core: Arc<Core<Task>>,
    no: u64,
}

impl BlockHook for Hook {
    fn enter(&self) {
        self.core.block(self.no, super::core::Block::Enter);
        if self.core.take_saturation() {
            super::monitor::poke();
        }
    }
    fn leave(&self) {
        self.core.block(self.no, super::core::Block::Leave);
        if self.core.take_saturation() {
            super::monitor::poke();
        }
    }
}
