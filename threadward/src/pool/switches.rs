//! Context-switch records (README.md: "Switch records"): the monitor sees
//! a watched worker leave its CPU to sleep about as it happens, instead of
//! at its next look.
//!
//! Linux lets an unprivileged process record the context switches of its
//! own threads: a dummy software perf event per watched thread
//! (`context_switch`, user space only, a wake-up at every record) writes a
//! `PERF_RECORD_SWITCH` into a small ring buffer at each switch, flagged
//! "out" when the thread leaves the CPU and "preempt" when it was
//! preempted rather than went to sleep. The monitor waits on all the
//! buffers at once with epoll (each event's fd duplicated through a pidfd
//! of this process, `pidfd_getfd`: `perf-event2` hands out only a raw fd,
//! and this keeps the library free of `unsafe`), and a worker whose latest
//! record is a voluntary "out" is asleep now.
//!
//! Refused where `perf_event_paranoid` is above 2 or a seccomp filter
//! forbids the call (Docker's default): the monitor then keeps to its
//! `/proc` looks, and says so once. `THREADWARD_SWITCH_RECORDS=off` forces
//! that fallback (the tests run both).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use perf_event::events::Software;
use perf_event::{Builder, Sampler};
use rustix::event::epoll;

/// Workers watched through records at once: each ring buffer is two pages
/// of locked memory, and the per-user budget (`perf_event_mlock_kb`) is
/// ~516 KiB per CPU.
pub(crate) const MAX_ARMED: usize = 64;

/// `PERF_RECORD_LOST`: the ring was full, records were dropped.
const RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SWITCH`.
const RECORD_SWITCH: u32 = 14;
/// After a refused arming (the locked-memory budget is shared with other
/// processes, or no fd is left), no new arming for this long.
const ARM_BACKOFF: Duration = Duration::from_millis(100);
/// `PERF_RECORD_MISC_SWITCH_OUT`.
const MISC_OUT: u16 = 0x2000;
/// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`.
const MISC_PREEMPT: u16 = 0x4000;
/// The timer's epoll token (workers' tokens count up from 0).
const TIMER: u64 = u64::MAX;
/// Ring buffer data size (one page).
const RING: usize = 4096;

/// Whether the monitor uses switch records: 0 not tried yet, 1 yes, 2 no.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether the monitor sees blocks through context-switch records
/// (`Some(true)`), through `/proc` looks only (`Some(false)`: refused by
/// the kernel or switched off), or has not needed to yet (`None`).
pub(crate) fn in_use() -> Option<bool> {
    match STATE.load(Ordering::Relaxed) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

/// A pool (its core's address) and one of its workers.
pub(crate) type WorkerKey = (usize, u64);

struct Armed {
    tid: i32,
    sampler: Sampler,
    /// The duplicate of the event's fd that epoll watches.
    _watched: OwnedFd,
    /// Its latest record said it left the CPU to sleep.
    asleep: bool,
}

/// The armed workers and the epoll set that waits on their records.
pub(crate) struct Switches {
    pidfd: OwnedFd,
    epoll: OwnedFd,
    /// The tick's end, in the epoll set: `epoll_wait`'s own timeout is in
    /// milliseconds unless the kernel has `epoll_pwait2`, and a 50 µs tick
    /// became 1 ms.
    timer: OwnedFd,
    armed: HashMap<WorkerKey, Armed>,
    /// Epoll tokens to workers.
    tokens: HashMap<u64, WorkerKey>,
    next_token: u64,
    /// When an arming last failed.
    failed_at: Option<std::time::Instant>,
}

impl std::fmt::Debug for Switches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switches")
            .field("armed", &self.armed.len())
            .finish()
    }
}

impl Switches {
    /// Sets up, and arms a first event on the calling thread to see
    /// whether the kernel allows it. `Err`: why not (the fallback is
    /// used; the caller says so once).
    pub(crate) fn open() -> Result<Switches, String> {
        let verdict = Self::try_open();
        STATE.store(if verdict.is_ok() { 1 } else { 2 }, Ordering::Relaxed);
        verdict
    }

    fn try_open() -> Result<Switches, String> {
        if std::env::var("THREADWARD_SWITCH_RECORDS").is_ok_and(|v| v == "off") {
            return Err("switched off by THREADWARD_SWITCH_RECORDS=off".into());
        }
        let pidfd = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| format!("pidfd_open: {e}"))?;
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
        let timer = rustix::time::timerfd_create(
            rustix::time::TimerfdClockId::Monotonic,
            rustix::time::TimerfdFlags::CLOEXEC | rustix::time::TimerfdFlags::NONBLOCK,
        )
        .map_err(|e| format!("timerfd_create: {e}"))?;
        epoll::add(
            &epoll,
            &timer,
            epoll::EventData::new_u64(TIMER),
            epoll::EventFlags::IN,
        )
        .map_err(|e| format!("epoll_ctl: {e}"))?;
        let mut s = Switches {
            pidfd,
            epoll,
            timer,
            armed: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            failed_at: None,
        };
        let me = rustix::thread::gettid().as_raw_nonzero().get();
        s.arm((0, u64::MAX), me)
            .map_err(|e| format!("perf_event_open (context-switch records): {e}"))?;
        s.retain(|_| false);
        Ok(s)
    }

    /// Starts watching thread `tid` as worker `key` (again if its thread
    /// changed). At most `MAX_ARMED` at once: beyond that, `Ok(false)`.
    pub(crate) fn arm(&mut self, key: WorkerKey, tid: i32) -> std::io::Result<bool> {
        if self.armed.get(&key).is_some_and(|a| a.tid == tid) {
            return Ok(true);
        }
        self.disarm(&key);
        if self.armed.len() >= MAX_ARMED
            || self.failed_at.is_some_and(|t| t.elapsed() < ARM_BACKOFF)
        {
            return Ok(false);
        }
        let armed = self.arm_new(key, tid);
        if armed.is_err() {
            self.failed_at = Some(std::time::Instant::now());
        }
        armed
    }

    fn arm_new(&mut self, key: WorkerKey, tid: i32) -> std::io::Result<bool> {
        let mut sampler = Builder::new(Software::DUMMY)
            .observe_pid(tid)
            .any_cpu()
            .context_switch(true)
            .exclude_kernel(true)
            .exclude_hv(true)
            .wakeup_watermark(1)
            .build()?
            .sampled(RING)?;
        sampler.enable()?;
        let watched = rustix::process::pidfd_getfd(
            &self.pidfd,
            sampler.as_raw_fd(),
            rustix::process::PidfdGetfdFlags::empty(),
        )?;
        let token = self.next_token;
        self.next_token += 1;
        epoll::add(
            &self.epoll,
            &watched,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )?;
        self.tokens.insert(token, key);
        self.armed.insert(
            key,
            Armed {
                tid,
                sampler,
                _watched: watched,
                asleep: false,
            },
        );
        Ok(true)
    }

    fn disarm(&mut self, key: &WorkerKey) {
        if self.armed.remove(key).is_some() {
            // Closing the duplicate takes it out of the epoll set.
            self.tokens.retain(|_, k| k != key);
        }
    }

    /// Stops watching every worker `keep` says no to.
    pub(crate) fn retain(&mut self, keep: impl Fn(&WorkerKey) -> bool) {
        let gone: Vec<WorkerKey> = self.armed.keys().filter(|k| !keep(k)).copied().collect();
        for k in gone {
            self.disarm(&k);
        }
    }

    /// Whether no worker is watched.
    pub(crate) fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Drops the records written so far and what they said: records
    /// nobody read for a while are stale.
    pub(crate) fn forget_records(&mut self) {
        for a in self.armed.values_mut() {
            while a.sampler.next_record().is_some() {}
            a.asleep = false;
        }
    }

    /// Waits up to `timeout` for records, and returns the workers (with
    /// their thread ids) whose latest record says they went to sleep (not
    /// preempted) and have not run since. Where the timer or the wait
    /// fails, it sleeps out `timeout` instead and returns none.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Vec<(WorkerKey, i32)> {
        let mut events = Vec::with_capacity(MAX_ARMED + 1);
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let at = rustix::time::Itimerspec {
            it_interval: zero,
            it_value: rustix::time::Timespec {
                tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                // A zero value disarms: wait at least a nanosecond.
                tv_nsec: i64::from(timeout.subsec_nanos().max(u32::from(timeout.is_zero()))),
            },
        };
        let armed = rustix::time::timerfd_settime(
            &self.timer,
            rustix::time::TimerfdTimerFlags::empty(),
            &at,
        );
        if armed.is_err()
            || epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            )
            .is_err()
        {
            // No spinning on a failing call: the tick is slept out.
            std::thread::sleep(timeout);
            return Vec::new();
        }
        // Clear the timer's expiry count (if it fired).
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.timer, &mut count);
        let mut asleep = Vec::new();
        let mut gone = Vec::new();
        for ev in &events {
            let data = ev.data;
            let Some(key) = self.tokens.get(&data.u64()).copied() else {
                continue;
            };
            let Some(a) = self.armed.get_mut(&key) else {
                continue;
            };
            while let Some(r) = a.sampler.next_record() {
                match r.ty() {
                    RECORD_SWITCH => {
                        let misc = r.misc();
                        a.asleep = misc & MISC_OUT != 0 && misc & MISC_PREEMPT == 0;
                    }
                    // Dropped records: what the thread does now is unknown.
                    RECORD_LOST => a.asleep = false,
                    _ => {}
                }
            }
            if a.asleep {
                asleep.push((key, a.tid));
            }
            // The thread exited: its event reports hang-up for ever.
            let flags = ev.flags;
            if flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR) {
                gone.push(key);
            }
        }
        for k in gone {
            self.disarm(&k);
        }
        asleep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watched thread that sleeps is reported asleep, and a disarmed one
    /// is forgotten. Skipped (with a note) where the kernel refuses the
    /// records.
    #[test]
    fn a_sleeping_thread_is_reported() {
        let mut s = match Switches::try_open() {
            Ok(s) => s,
            Err(why) => {
                eprintln!("switch records unavailable here ({why}): fallback only");
                return;
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
        let t = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            while let Ok(sleep) = go_rx.recv() {
                if sleep {
                    std::thread::sleep(Duration::from_millis(300));
                } else {
                    let end = std::time::Instant::now() + Duration::from_millis(300);
                    while std::time::Instant::now() < end {
                        std::hint::spin_loop();
                    }
                }
            }
        });
        let tid = rx.recv().unwrap();
        assert!(s.arm((1, 1), tid).unwrap());
        // Let the arming's own switches pass.
        std::thread::sleep(Duration::from_millis(20));
        s.wait(Duration::ZERO);
        go_tx.send(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if s.wait(Duration::from_millis(10))
                .iter()
                .any(|(k, _)| *k == (1, 1))
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sleep was never seen"
            );
        }
        s.retain(|_| false);
        assert!(s.is_empty());
        drop(go_tx);
        t.join().unwrap();
    }
}
