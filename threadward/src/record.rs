//! Thread records: [`ThreadId`] slots with generations, and the
//! per-thread record that handles, waits, pools and snapshots share.
//!
//! # Why generations
//!
//! A [`ThreadId`] is a slot index plus the generation the slot had when the
//! thread was registered. A slot is released when its thread's body returns,
//! and the next thread to take it bumps the generation, so an id kept past
//! its thread's exit resolves to nothing instead of to a stranger: the ABA
//! hazard that made `kthread_stop` unsafe on an already-exited task cannot
//! happen here. A slot whose generation is exhausted is retired.
//!
//! Records record; they never start, stop or join anything. The one lock
//! guards the slot table and is held for a few instructions per register,
//! release and find; nobody waits while holding it. The public view of
//! these records (`lookup`, `snapshot`) is the `registry` module, above the
//! thread and pool layers.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::stop::StopSource;
use std::sync::Arc;

use crate::sync::{Condvar, Latch, Mutex};

/// Identity of a managed thread: a registry slot plus its generation.
///
/// Ids are never reused: once a thread has exited, its id resolves to
/// nothing, even after another thread took the same slot.
///
/// # Examples
///
/// ```
/// let t = threadward::spawn("ided", |cx| cx.id()).unwrap();
/// let id = t.id();
/// assert_eq!(t.join().unwrap(), id);
/// assert!(threadward::registry::lookup(id).is_none()); // exited
/// println!("{id}"); // e.g. "T3.1"
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId {
    slot: u32,
    generation: u32,
}

impl ThreadId {
    /// The registry slot (reused by later threads).
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("slot", |_| ()).unwrap();
    /// let _slot: u32 = t.id().slot();
    /// ```
    pub fn slot(self) -> u32 {
        self.slot
    }

    /// The generation of the slot when this thread took it.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = threadward::spawn("gen", |_| ()).unwrap();
    /// assert!(t.id().generation() >= 1);
    /// ```
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThreadId({}.{})", self.slot, self.generation)
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}.{}", self.slot, self.generation)
    }
}

/// What a managed thread is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadKind {
    /// A thread started with [`spawn`](crate::spawn) or [`Builder`](crate::Builder).
    Thread,
    /// A worker of the named pool.
    PoolWorker {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// One of the process-wide threads that serve every pool (the manager
    /// that creates and retires workers, the monitor that finds blocked
    /// jobs); they come with the first pool and go with the last.
    PoolService,
}

/// Which stop-aware wait a thread is blocked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitKind {
    /// [`Context::sleep`](crate::Context::sleep).
    Sleep,
    /// [`Context::wait_while`](crate::Context::wait_while).
    Condvar,
    /// [`Context::recv`](crate::Context::recv).
    Channel,
    /// [`Context::wait_readable`](crate::Context::wait_readable) or
    /// [`Context::wait_writable`](crate::Context::wait_writable).
    Fd,
}

impl fmt::Display for WaitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitKind::Sleep => "sleep",
            WaitKind::Condvar => "condvar",
            WaitKind::Channel => "channel",
            WaitKind::Fd => "fd",
        })
    }
}

/// What a managed thread is doing, as last recorded by the thread itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThreadState {
    /// Registered, body not entered yet.
    Starting,
    /// Running its body or a job.
    Running,
    /// A pool worker parked waiting for a job.
    Idle,
    /// Blocked in a stop-aware wait.
    Waiting(WaitKind),
    /// Sitting in [`Context::pause_point`](crate::Context::pause_point).
    Paused,
    /// Running, with a stop requested and not yet observed by a return.
    Stopping,
}

impl fmt::Display for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadState::Starting => f.write_str("starting"),
            ThreadState::Running => f.write_str("running"),
            ThreadState::Idle => f.write_str("idle"),
            ThreadState::Waiting(w) => write!(f, "waiting:{w}"),
            ThreadState::Paused => f.write_str("paused"),
            ThreadState::Stopping => f.write_str("stopping"),
        }
    }
}

impl ThreadState {
    fn encode(self) -> u8 {
        match self {
            ThreadState::Starting => 0,
            ThreadState::Running => 1,
            ThreadState::Idle => 2,
            ThreadState::Paused => 3,
            ThreadState::Stopping => 4,
            ThreadState::Waiting(WaitKind::Sleep) => 10,
            ThreadState::Waiting(WaitKind::Condvar) => 11,
            ThreadState::Waiting(WaitKind::Channel) => 12,
            ThreadState::Waiting(WaitKind::Fd) => 13,
        }
    }

    fn decode(v: u8) -> ThreadState {
        match v {
            0 => ThreadState::Starting,
            1 => ThreadState::Running,
            2 => ThreadState::Idle,
            3 => ThreadState::Paused,
            10 => ThreadState::Waiting(WaitKind::Sleep),
            11 => ThreadState::Waiting(WaitKind::Condvar),
            12 => ThreadState::Waiting(WaitKind::Channel),
            13 => ThreadState::Waiting(WaitKind::Fd),
            _ => ThreadState::Stopping,
        }
    }
}

/// Nanoseconds since a process-wide epoch, for cheap state timestamps.
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Pause (kthread_park) handshake state, guarded by `ThreadRecord::pause`.
#[derive(Default)]
pub(crate) struct PauseState {
    /// A stopper asked the thread to pause.
    pub(crate) requested: bool,
    /// The thread sits in `pause_point`.
    pub(crate) paused: bool,
}

/// Everything shared about one managed thread. Owned by its handles
/// (`Thread`, `Stopper`, the thread's own `Context`) and, while the thread
/// lives, by the registry slot.
pub(crate) struct ThreadRecord {
    pub(crate) id: ThreadId,
    pub(crate) name: Arc<str>,
    pub(crate) kind: ThreadKind,
    pub(crate) stop: StopSource,
    pub(crate) finished: Latch,
    pub(crate) pause: Mutex<PauseState>,
    pub(crate) pause_cv: Condvar,
    /// The kernel's id of the thread (for `/proc/self/task/TID`), set as it
    /// starts.
    pub(crate) tid: OnceLock<i32>,
    state: AtomicU8,
    since: AtomicU64,
    /// Current pool job id, 0 when none.
    job: AtomicU64,
    /// A pool job whose closure returned while the worker still runs its
    /// user code (waker, a detached value's drop); 0 when none.
    finishing: AtomicU64,
    /// The job the watchdog reported (0: none).
    overdue: AtomicU64,
    /// A pause request kicks the thread out of the library wait it sits in
    /// (`kthread_park` wakes the thread so it reaches its park point): a
    /// token on this channel for the sleep and channel waits, and a write
    /// to `kick_fd` (made by the thread's first fd wait) for the fd waits.
    pub(crate) kick: Kick,
}

/// See `ThreadRecord::kick`.
pub(crate) struct Kick {
    tx: crossbeam_channel::Sender<()>,
    pub(crate) rx: crossbeam_channel::Receiver<()>,
    /// Made by the thread's first fd wait, closed when it exits (not kept
    /// for as long as a handle lives).
    pub(crate) fd: std::sync::Mutex<Option<Arc<std::os::fd::OwnedFd>>>,
}

impl Kick {
    fn new() -> Kick {
        let (tx, rx) = crossbeam_channel::bounded(1);
        Kick {
            tx,
            rx,
            fd: std::sync::Mutex::new(None),
        }
    }

    /// Wakes the thread's current (or next) library wait. A kick nobody
    /// waits for is seen by the next wait, which finds no pause to take
    /// and carries on.
    pub(crate) fn kick(&self) {
        let _ = self.tx.try_send(());
        if let Some(fd) = self.fd.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = rustix::io::write(&**fd, &1u64.to_ne_bytes());
        }
    }

    /// The eventfd a pause request writes to, made on first use; `true`
    /// when this call made it.
    pub(crate) fn fd(&self) -> std::io::Result<(Arc<std::os::fd::OwnedFd>, bool)> {
        let mut fd = self.fd.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fd.as_ref() {
            return Ok((f.clone(), false));
        }
        let f = Arc::new(rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?);
        *fd = Some(f.clone());
        Ok((f, true))
    }

    /// The thread exited: its eventfd is closed now.
    pub(crate) fn close(&self) {
        drop(self.fd.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

impl ThreadRecord {
    pub(crate) fn set_state(&self, s: ThreadState) {
        use std::sync::atomic::Ordering::Relaxed;
        self.since.store(now_nanos(), Relaxed);
        self.state.store(s.encode(), Relaxed);
    }

    /// Sets `Running` unless the thread is in it already (a pool worker
    /// starting its next job in a run of jobs): its `since` stays the
    /// start of the run, and no clock is read.
    pub(crate) fn set_running(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.state.load(Relaxed) != ThreadState::Running.encode() {
            self.set_state(ThreadState::Running);
        }
    }

    pub(crate) fn state(&self) -> (ThreadState, Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut s = ThreadState::decode(self.state.load(Relaxed));
        if s == ThreadState::Running && self.stop.stop_requested() {
            s = ThreadState::Stopping;
        }
        let since = self.since.load(Relaxed);
        (s, Duration::from_nanos(now_nanos().saturating_sub(since)))
    }

    /// Records the pool job this worker runs (0: none). A worker's
    /// `Stopping` state follows its job's stop, which the pool knows; the
    /// registry asks it (`pool::live_pools`) instead of this record
    /// keeping a copy per job.
    pub(crate) fn set_job(&self, job: u64) {
        self.job.store(job, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn set_finishing(&self, job: u64) {
        self.finishing
            .store(job, std::sync::atomic::Ordering::Relaxed);
    }

    /// The watchdog reported job `job` on this worker.
    pub(crate) fn set_overdue(&self, job: u64) {
        self.overdue
            .store(job, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the job this worker runs now was reported by the watchdog.
    pub(crate) fn overdue(&self) -> bool {
        let o = self.overdue.load(std::sync::atomic::Ordering::Relaxed);
        o != 0 && self.job() == Some(o)
    }

    pub(crate) fn finishing(&self) -> Option<u64> {
        match self.finishing.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            j => Some(j),
        }
    }

    pub(crate) fn job(&self) -> Option<u64> {
        match self.job.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            j => Some(j),
        }
    }

    /// Requests this thread's stop; logs the request that won.
    pub(crate) fn request_stop(&self) -> bool {
        let won = self.stop.request_stop();
        if won {
            tracing::debug!(thread = %self.name, id = %self.id, "stop requested");
        }
        won
    }

    /// Whether the calling OS thread is this managed thread.
    pub(crate) fn is_current(&self) -> bool {
        CURRENT.with(|c| c.get()).is_some_and(|id| id == self.id)
    }

    /// Marks the calling OS thread as this managed thread. Called first
    /// thing on the new thread, before any user code or pool job runs.
    pub(crate) fn enter(&self) {
        CURRENT.with(|c| c.set(Some(self.id)));
        let _ = self
            .tid
            .set(rustix::thread::gettid().as_raw_nonzero().get());
    }
}

thread_local! {
    /// The managed thread running on this OS thread (a pool worker's
    /// pool and number are the pool's own thread-local, `pool::worker`).
    static CURRENT: std::cell::Cell<Option<ThreadId>> = const { std::cell::Cell::new(None) };
}

struct Slot {
    generation: u32,
    record: Option<Arc<ThreadRecord>>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

static TABLE: std::sync::Mutex<Table> = std::sync::Mutex::new(Table {
    slots: Vec::new(),
    free: Vec::new(),
});

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a slot and records a new thread in it.
pub(crate) fn register(name: Arc<str>, kind: ThreadKind, stop: StopSource) -> Arc<ThreadRecord> {
    let mut t = table();
    let slot = match t.free.pop() {
        Some(s) => s,
        None => {
            t.slots.push(Slot {
                generation: 0,
                record: None,
            });
            u32::try_from(t.slots.len() - 1).expect("more than 2^32 live threads")
        }
    };
    let entry = &mut t.slots[slot as usize];
    // A slot whose generation is exhausted is retired (see `release`), so
    // this never wraps: an old id can never match a later thread.
    entry.generation += 1;
    let rec = Arc::new(ThreadRecord {
        id: ThreadId {
            slot,
            generation: entry.generation,
        },
        name,
        kind,
        stop,
        finished: Latch::new(),
        pause: Mutex::new(PauseState::default()),
        pause_cv: Condvar::new(),
        tid: OnceLock::new(),
        state: AtomicU8::new(ThreadState::Starting.encode()),
        since: AtomicU64::new(now_nanos()),
        job: AtomicU64::new(0),
        finishing: AtomicU64::new(0),
        overdue: AtomicU64::new(0),
        kick: Kick::new(),
    });
    entry.record = Some(rec.clone());
    rec
}

/// Releases `id`'s slot; a no-op if it was already released. A slot whose
/// generation reached `u32::MAX` is retired instead of reused: one slot
/// (a few bytes) per 4 billion threads, so that ids are never reused.
pub(crate) fn release(id: ThreadId) {
    let mut t = table();
    let Some(entry) = t.slots.get_mut(id.slot as usize) else {
        return;
    };
    if entry.generation == id.generation
        && entry.record.take().is_some()
        && entry.generation < u32::MAX
    {
        t.free.push(id.slot);
    }
}

/// The record of a live thread, if `id` still names one.
/// The record of the managed thread running on this OS thread, if any.
pub(crate) fn current() -> Option<Arc<ThreadRecord>> {
    find(CURRENT.with(|c| c.get())?)
}

pub(crate) fn find(id: ThreadId) -> Option<Arc<ThreadRecord>> {
    let t = table();
    let entry = t.slots.get(id.slot as usize)?;
    if entry.generation != id.generation {
        return None;
    }
    entry.record.clone()
}

/// Every live record (for snapshots).
pub(crate) fn live_records() -> Vec<Arc<ThreadRecord>> {
    let t = table();
    t.slots.iter().filter_map(|s| s.record.clone()).collect()
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{thread, Arc};

    /// The pause kick's order (`Kick::kick` and `Context::wait_fd_until`),
    /// with the kick eventfd's `OnceLock` modelled by a mutex (the model
    /// checks the protocol, not std's `OnceLock`): the requester sets
    /// `requested` under the pause lock, then looks for the fd to write;
    /// the waiter creates the fd, then reads `requested` under the pause
    /// lock before it polls. Either the requester finds the fd (and its
    /// write wakes the poll) or the waiter sees the request (and parks
    /// before polling): a pause is never lost.
    #[test]
    fn loom_pause_kick_never_lost() {
        loom::model(|| {
            let requested = Arc::new(Mutex::new(false));
            let fd = Arc::new(Mutex::new(false)); // the OnceLock: set or not
            let (r2, f2) = (requested.clone(), fd.clone());
            let requester = thread::spawn(move || {
                *crate::sync::lock(&r2) = true;
                *crate::sync::lock(&f2) // found the fd: kicked
            });
            *crate::sync::lock(&fd) = true;
            let saw_request = *crate::sync::lock(&requested);
            let kicked = requester.join().unwrap();
            assert!(kicked || saw_request, "a pause request was lost");
        });
    }

    /// Stop request vs thread exit vs waiters: whatever the interleaving, both
    /// waiters return once the thread has exited, and the body either saw
    /// the stop or finished on its own.
    #[test]
    fn loom_request_vs_exit_vs_wait() {
        loom::model(|| {
            let stop = StopSource::new();
            let latch = Arc::new(Latch::new());
            let token = stop.token();
            let l = latch.clone();
            let body = thread::spawn(move || {
                let saw = token.stop_requested();
                l.set();
                saw
            });
            let l2 = latch.clone();
            let s2 = stop.clone();
            let waiter = thread::spawn(move || {
                s2.request_stop();
                l2.wait();
            });
            stop.request_stop();
            latch.wait();
            assert!(latch.is_set());
            waiter.join().unwrap();
            let _saw = body.join().unwrap();
        });
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    /// Issue 10 item 15: generations were `u32` with `wrapping_add`, so
    /// after 2^32 reuses of a slot a stale id reached a live thread. A slot
    /// whose generation is exhausted is now retired: never handed out
    /// again, so no later thread can ever carry an old id.
    #[test]
    fn an_exhausted_slot_is_retired_not_wrapped() {
        let first = register(Arc::from("gen-a"), ThreadKind::Thread, StopSource::new());
        let slot = first.id.slot;
        release(first.id);
        // Pretend the slot was reused 2^32 - 2 times: the next thread in it
        // gets the last generation.
        table().slots[slot as usize].generation = u32::MAX - 1;
        let mut last = None;
        let mut others = Vec::new();
        // Take free slots until ours comes back (other tests may hold some).
        for _ in 0..10_000 {
            let r = register(Arc::from("gen-b"), ThreadKind::Thread, StopSource::new());
            if r.id.slot == slot {
                last = Some(r);
                break;
            }
            others.push(r);
        }
        let last = last.expect("the slot is reused before it is exhausted");
        assert_eq!(last.id.generation, u32::MAX);
        release(last.id);
        for _ in 0..1000 {
            let r = register(Arc::from("gen-c"), ThreadKind::Thread, StopSource::new());
            assert_ne!(r.id.slot, slot, "an exhausted slot was handed out again");
            others.push(r);
        }
        assert!(find(first.id).is_none() && find(last.id).is_none());
        for r in others {
            release(r.id);
        }
    }
}
