//! The worker loop and the manager loop (README.md: "Worker states",
//! "Spare management").

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use super::core::{Core, Next};
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

/// Creates worker `no` (already reserved in the core) and records it. On
/// error the reservation stands: the caller undoes it (`spawn_failed`, or
/// `withdraw` together with its job).
pub(crate) fn start_worker(pool: &PoolRef, no: u64) -> io::Result<()> {
    let c = pool.core.clone();
    match spawn_worker(
        pool.name.clone(),
        pool.key,
        no,
        Some(pool.stack_size),
        move |rec| worker_main(&c, no, rec),
    ) {
        Ok((rec, handle)) => {
            pool.core.spawned(no, rec, handle);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The worker's exit bookkeeping, run by `Drop` so that it runs also if the
/// worker unwinds (jobs never unwind out of `run`; this is the backstop).
struct Leave<'a> {
    core: &'a Core<Task>,
    rec: &'a ThreadRecord,
    no: u64,
    /// Has not made its first `next` call yet.
    starting: Cell<bool>,
    /// Took a job whose outcome is not reported yet.
    busy: Cell<bool>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        // Leave the registry before the pool counts us gone, so that once a
        // shutdown saw `threads == 0`, no worker of the pool is listed any
        // more (the thread's own exit guard then finds the slot released).
        crate::record::release(self.rec.id);
        if let Some(prev) = self
            .core
            .exit(self.no, self.starting.get(), self.busy.get())
        {
            let _ = prev.join();
        }
    }
}

/// A worker's report of its job's blocking waits to the pool.
struct Hook {
    core: Arc<Core<Task>>,
    no: u64,
}

impl BlockHook for Hook {
    fn blocking(&self, enter: bool) {
        self.core.blocking(self.no, enter);
        if self.core.take_saturation() {
            super::monitor::poke();
        }
    }
}

fn worker_main(core: &Arc<Core<Task>>, no: u64, rec: &Arc<ThreadRecord>) {
    // Only a pool with a concurrency target needs to hear of blocking.
    let hook: Option<Arc<dyn BlockHook>> = core.cfg.target.map(|_| {
        Arc::new(Hook {
            core: core.clone(),
            no,
        }) as Arc<dyn BlockHook>
    });
    let leave = Leave {
        core,
        rec,
        no,
        starting: Cell::new(true),
        busy: Cell::new(false),
    };
    let set_idle = |idle: bool| {
        rec.set_state(if idle {
            ThreadState::Idle
        } else {
            ThreadState::Running
        })
    };
    // The next job, handed over by `report` in the critical section that
    // counted the last one (no second lock, no wake-up).
    let handed: Cell<Option<Task>> = Cell::new(None);
    let report = |outcome, settle: &mut dyn FnMut()| {
        let next = core.report(no, outcome, settle, true);
        leave.busy.set(next.is_some());
        handed.set(next);
    };
    loop {
        let task = match handed.take() {
            Some(task) => task,
            None => match core.next(no, leave.starting.replace(false), set_idle) {
                Next::Run(task) => {
                    leave.busy.set(true);
                    task
                }
                Next::Exit => break,
            },
        };
        if core.take_saturation() {
            super::monitor::poke();
        }
        // `run` reports the outcome before the joiner wakes, and never
        // unwinds.
        task.run(rec, hook.as_ref(), &report);
    }
}
