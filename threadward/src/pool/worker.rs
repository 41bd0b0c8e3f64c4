//! The worker loop and the manager loop (README.md: "Worker states",
//! "Spare management").

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::core::{Core, Next};
use super::job::Task;
use crate::registry::{ThreadRecord, ThreadState};
use crate::thread::spawn_worker;

/// First and last back-off after the OS refused a thread.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Creates worker `no` (already reserved in `core`) and records the outcome.
pub(crate) fn start_worker(
    core: &Arc<Core<Task>>,
    pool: &Arc<str>,
    stack_size: usize,
    no: u64,
) -> io::Result<()> {
    let c = core.clone();
    let name = format!("{pool}-{no}");
    match spawn_worker(&name, pool.clone(), Some(stack_size), move |rec| {
        worker_main(&c, no, rec)
    }) {
        Ok((rec, handle)) => {
            core.spawned(no, rec, handle);
            Ok(())
        }
        Err(e) => {
            core.spawn_failed(no);
            Err(e)
        }
    }
}

fn worker_main(core: &Core<Task>, no: u64, rec: &Arc<ThreadRecord>) {
    let mut finished = None;
    let mut first = true;
    let set_idle = |idle: bool| {
        rec.set_state(if idle {
            ThreadState::Idle
        } else {
            ThreadState::Running
        })
    };
    loop {
        match core.next(no, first, finished.take(), set_idle) {
            Next::Run(task) => finished = Some(task.run(rec)),
            Next::Exit => break,
        }
        first = false;
    }
    if let Some(prev) = core.exit(no) {
        let _ = prev.join();
    }
}

/// The manager: creates the threads the deficit asks for, off every
/// submitter's path, backing off while the OS refuses.
pub(crate) fn manager_main(
    core: &Arc<Core<Task>>,
    pool: &Arc<str>,
    stack_size: usize,
    me: &ThreadRecord,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        me.set_state(ThreadState::Idle);
        let Some(no) = core.manager_next() else {
            break;
        };
        me.set_state(ThreadState::Running);
        match start_worker(core, pool, stack_size, no) {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                tracing::warn!(pool = %pool, error = %e, backoff = ?backoff,
                    "OS refused a pool thread; queued jobs wait for existing workers");
                core.manager_pause(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
