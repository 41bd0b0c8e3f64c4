//! The manager's side of the dispatch protocol (README.md: "Spare
//! management", "Idle timeout"): one step of work per pool for the
//! process-wide manager, and the blocking loop the models drive.

use std::time::{Duration, Instant};

use super::slot::Ticket;
use super::state::{Stall, State};
use super::{Core, Locked, QueuedJob, Wakes};

/// How often the manager looks whether a thread that left is gone.
const EXIT_RECHECK: std::time::Duration = std::time::Duration::from_millis(1);

/// What the manager should do for a pool now.
pub(crate) enum ManagerStep {
    /// Create worker `no` (reserved).
    Create(u64),
    /// Nothing to do until woken, or until this instant (an idle window
    /// ends).
    Wait(Option<Instant>),
    /// The pool is shut down.
    Exit,
}

impl<J: QueuedJob> Core<J> {
    /// One step of the manager's work for this pool at `now` (README:
    /// "Spare management"): reap the workers that stayed parked through an
    /// expired idle window, then reserve a thread if the deficit or a
    /// standing spare request asks for one. Otherwise say until when
    /// nothing is due (the idle window's end, if one runs).
    pub(crate) fn manager_step(&self, now: Instant) -> ManagerStep {
        if self.lock().shutdown {
            // The shutdown settles the exits itself (it detaches them).
            return ManagerStep::Exit;
        }
        self.reap_exits();
        let mut st = self.lock();
        if st.shutdown {
            return ManagerStep::Exit;
        }
        if st.closing {
            st.grow = 0; // no spares for a pool that is closing
        }
        if st.idle_deadline.is_some_and(|d| now >= d) {
            st.idle_deadline = None;
            st = self.reap_idle(st);
        }
        while self.deficit(&st) > 0 || st.grow > 0 {
            st.grow = st.grow.saturating_sub(1);
            if st.threads < self.cfg.max_threads {
                return ManagerStep::Create(self.reserve_locked(&mut st, None));
            }
            st.grow = 0;
        }
        // A thread that left stays counted until its exit ended (reaped at
        // the start of this step); while some are still there, look again
        // in a millisecond.
        let recheck = if st.exited.is_empty() {
            None
        } else {
            now.checked_add(EXIT_RECHECK)
        };
        st.manager_notified = false;
        if st.idle() <= self.cfg.min_idle {
            st.idle_deadline = None;
            return ManagerStep::Wait(recheck);
        }
        if st.idle_deadline.is_none() {
            // A window starts: whoever stays parked through it is reaped.
            st.idle_low = st.idle();
            st.idle_deadline = now.checked_add(self.cfg.idle_timeout);
        }
        ManagerStep::Wait(match (st.idle_deadline, recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// A blocking manager loop on this pool's own condvar, for the models
    /// (the real manager is process-wide: `manager.rs`). Returns the slot
    /// of a worker to create, or `None` once the pool is shut down. Under
    /// loom and shuttle a timed wait "times out" at once, which ends the
    /// idle window then: reaping races everything.
    #[cfg(all(test, shuttle))]
    pub(crate) fn manager_next(&self) -> Option<u64> {
        loop {
            let now = Instant::now();
            match self.manager_step(now) {
                ManagerStep::Create(no) => return Some(no),
                ManagerStep::Exit => return None,
                ManagerStep::Wait(deadline) => {
                    let st = self.lock();
                    if st.manager_notified || st.shutdown {
                        continue;
                    }
                    match deadline {
                        None => drop(st.wait(&self.manager_cv)),
                        Some(d) => {
                            // Under the models a timed wait "times out" at
                            // an arbitrary point (`sync::wait_timeout`).
                            let left = d.saturating_duration_since(now);
                            let (mut st, timed_out) = st.wait_timeout(&self.manager_cv, left);
                            if timed_out && st.idle_deadline.is_some() {
                                st.idle_deadline = Some(now); // expired: reap next step
                            }
                        }
                    }
                }
            }
        }
    }

    /// Hands exit tickets to the workers that stayed parked through the
    /// idle window (`idle_low` beyond `min_idle`), the coldest first, and
    /// wakes them.
    pub(super) fn reap_idle<'a>(&'a self, mut st: Locked<'a, J>) -> Locked<'a, J> {
        if st.shutdown || st.closing {
            return st;
        }
        let excess = st.idle_low.min(st.idle()).saturating_sub(self.cfg.min_idle);
        if excess == 0 {
            return st;
        }
        let mut wakes = Wakes::default();
        let cold: Vec<u64> = st.idle_stack.drain(..excess).collect();
        for no in cold {
            let slot = st.workers.get_mut(&no).expect("a parked worker has a slot");
            slot.ticket = Some(Ticket::Reap);
            wakes.workers.push(slot.cv.clone());
        }
        st.idle_low = st.idle();
        self.wake(st, wakes);
        self.lock()
    }

    /// Jobs wait that no thread can run: the pool is at `max_threads`
    /// with no worker parked, none claimed and none being created.
    pub(crate) fn starved(&self, st: &State<J>) -> bool {
        !st.shutdown
            && st.queued() > 0
            && st.threads >= self.cfg.max_threads
            && st.idle() == 0
            && st.notify.total() + st.coming.total() == 0
    }

    /// The manager's stall check at `now` (README.md: "Stalls"): a stall
    /// begins when jobs are starved, is warned about once it lasted
    /// `stall_after` with no job taken meanwhile, and ends when they are
    /// no longer starved or a job was taken. Returns what changed and when
    /// to look again.
    pub(crate) fn check_stall(&self, now: Instant) -> (Option<StallEvent>, Option<Instant>) {
        let mut st = self.lock();
        let after = self.cfg.stall_after;
        if !self.starved(&st) {
            let ended = st.stall.take().filter(|s| s.warned);
            return (
                ended.map(|s| StallEvent::Ended(now.saturating_duration_since(s.since))),
                None,
            );
        }
        let taken = st.counters.taken;
        let recheck = |since: Instant| since.checked_add(after).max(now.checked_add(after / 4));
        match st.stall {
            Some(s) if s.taken != taken => {
                // Progress: a job was taken. Not a stall; a new watch.
                let was = s.warned;
                st.stall = Some(Stall {
                    since: now,
                    taken,
                    warned: false,
                });
                let event = was.then(|| StallEvent::Ended(now.saturating_duration_since(s.since)));
                (event, recheck(now))
            }
            Some(mut s) => {
                if s.warned || now.saturating_duration_since(s.since) < after {
                    return (None, recheck(s.since));
                }
                s.warned = true;
                st.stall = Some(s);
                st.counters.stalls += 1;
                let event = StallEvent::Began {
                    waited: now.saturating_duration_since(s.since),
                    queued: st.queued(),
                    threads: st.threads,
                    busy: st.busy,
                };
                (Some(event), recheck(now))
            }
            None => {
                st.stall = Some(Stall {
                    since: now,
                    taken,
                    warned: false,
                });
                (None, recheck(now))
            }
        }
    }
}

impl<J: QueuedJob> Core<J> {
    /// The watchdog's look at `now` (README.md: "Watchdog"): every job
    /// running or blocked for `watchdog_after` and not reported yet is
    /// marked and returned (worker record, job, age), once. Looks at most
    /// every quarter threshold, and only while jobs run; returns when to
    /// look again.
    pub(crate) fn check_overdue(&self, now: Instant) -> (Vec<Overdue>, Option<Instant>) {
        let mut st = self.lock();
        let after = self.cfg.watchdog_after;
        // The manager looks every quarter threshold for as long as the pool
        // lives (a wake-up every 7.5 s by default), so nothing on a job's
        // path has to wake it.
        let every = (after / 4).max(Duration::from_millis(1));
        if st
            .watchdog_at
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return (
                Vec::new(),
                st.watchdog_at.and_then(|t| t.checked_add(every)),
            );
        }
        if st.busy == 0 {
            st.watchdog_at = Some(now);
            return (Vec::new(), now.checked_add(every));
        }
        st.watchdog_at = Some(now);
        let mut found = Vec::new();
        for w in st.workers.values_mut() {
            let Some(c) = w.current.as_mut() else {
                continue;
            };
            let age = now.saturating_duration_since(c.started);
            if c.overdue || age < after {
                continue;
            }
            c.overdue = true;
            if let Some(rec) = &w.rec {
                found.push(Overdue {
                    rec: rec.clone(),
                    job: c.job,
                    age,
                });
            }
        }
        st.counters.overdue += found.len() as u64;
        (found, now.checked_add(every))
    }
}

/// A job the watchdog found running or blocked past its threshold.
pub(crate) struct Overdue {
    pub(crate) rec: std::sync::Arc<crate::record::ThreadRecord>,
    pub(crate) job: u64,
    pub(crate) age: Duration,
}

/// What `check_stall` saw change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StallEvent {
    /// Jobs have waited `waited` for a thread at `max_threads`.
    Began {
        waited: Duration,
        queued: usize,
        threads: usize,
        busy: usize,
    },
    /// The stall warned about ended after this long.
    Ended(Duration),
}
