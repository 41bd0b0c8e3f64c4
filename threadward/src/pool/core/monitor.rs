//! The monitor's side of the dispatch protocol (README.md: "The
//! monitor"): which jobs it may look at, its verdicts, and the liveness
//! backstop.

use std::time::{Duration, Instant};

use super::state::JobHint;
use super::{Core, QueuedJob, Wakes};

/// What the monitor found a job doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Asleep outside the library's waits.
    Blocked,
    /// On a CPU past the hog threshold.
    Hog,
}

impl<J: QueuedJob> Core<J> {
    /// The monitor's verdict on worker `me`'s job `job` (README: "The
    /// monitor"): it is blocked outside the library's waits, or it hogs a
    /// CPU. It stops counting as running and the room it leaves is served
    /// at once. A job that ended or changed meanwhile is left alone.
    pub(crate) fn compensate(&self, me: u64, job: u64, verdict: Verdict) -> bool {
        let hog = verdict == Verdict::Hog;
        let mut st = self.lock();
        // The closure must still run: a worker found asleep may be one
        // that left it and waits for this lock to report.
        let live = st
            .workers
            .get(&me)
            .filter(|w| w.closure_runs(job))
            .and_then(|w| w.current.as_ref())
            .is_some_and(|c| {
                c.job == job
                    && c.watched()
                    && c.in_running()
                    && !c.compensated
                    && c.hint != JobHint::MayBlock
            });
        if !live {
            return false;
        }
        if hog {
            // The hog bound: at most `target` hogs compensated at once, so
            // CPU-bound jobs never hold more than twice the target's CPUs.
            let hogs = st
                .workers
                .values()
                .filter(|w| {
                    w.current
                        .as_ref()
                        .is_some_and(|c| c.compensated && c.blocked == 0)
                })
                .count();
            if hogs >= self.cfg.target.unwrap_or(0) {
                return false;
            }
        }
        let mut kind = None;
        Self::update_current(&mut st, me, |c| {
            c.compensated = true;
            c.blocked_seen |= !hog;
            c.hog = hog;
            kind = c.kind;
        });
        // A block is learned the moment it is seen (README.md: "Learned
        // hints"): a cold burst of a kind that blocks is promoted after
        // its first few blocks, not after its first jobs end.
        if let (false, true, Some(kind)) = (hog, self.cfg.learn, kind) {
            self.record_run(&mut st, kind, true);
        }
        if hog {
            st.counters.compensated_hogs += 1;
        } else {
            st.counters.compensated_blocked += 1;
        }
        let mut wakes = Wakes::default();
        self.dispatch(&mut st, &mut wakes);
        self.wake(st, wakes);
        true
    }

    /// For the monitor: every worker whose job counts as running, may be
    /// compensated and has run at least `min_age` (short jobs are not worth
    /// a look), with its thread id, job id and job age. Only while the
    /// job's closure runs (the worker's record names the job): before and
    /// after it the worker is in the pool's own code, whose short waits
    /// (this lock; malloc's arena lock when it frees the last job's cell
    /// after it was handed this one) look like a foreign block on a busy
    /// machine. Without this, 200 000 tiny jobs from 2 submitters showed
    /// ~30 false compensations and 8 threads for 2 CPUs.
    pub(crate) fn watch_list(&self, min_age: Duration) -> Vec<(u64, i32, u64, Duration)> {
        let st = self.lock();
        st.workers
            .iter()
            .filter_map(|(no, w)| {
                let (c, tid) = w.in_closure()?;
                let age = c.started.elapsed();
                (c.in_running() && c.watched() && age >= min_age).then_some((*no, tid, c.job, age))
            })
            .collect()
    }

    /// For the monitor's re-count pass (README.md: "The monitor"): up to
    /// `max` jobs found blocked (compensated, not hogs) whose closure still
    /// runs, from the worker after `cursor` on (wrapping), with their
    /// thread ids.
    pub(crate) fn recount_list(&self, cursor: u64, max: usize) -> Vec<(u64, i32, u64)> {
        let st = self.lock();
        let mut found: Vec<(u64, i32, u64)> = st
            .workers
            .iter()
            .filter_map(|(no, w)| {
                let (c, tid) = w.in_closure()?;
                (c.compensated && !c.hog && c.blocked == 0).then_some((*no, tid, c.job))
            })
            .collect();
        drop(st);
        // From the cursor on, wrapping: every such job gets its turn.
        found.sort_by_key(|&(no, _, _)| (no <= cursor, no));
        found.truncate(max);
        found
    }

    /// The monitor saw worker `me`'s compensated job `job` running again:
    /// it counts against the target again (cmwq's `wq_worker_running`),
    /// so a job that computes after its block does not run uncounted. A
    /// job that ended, changed or is in a library wait is left alone.
    pub(crate) fn recount(&self, me: u64, job: u64) -> bool {
        let mut st = self.lock();
        let live = st
            .workers
            .get(&me)
            .and_then(|w| w.current.as_ref())
            .is_some_and(|c| c.job == job && c.compensated && !c.hog && c.blocked == 0);
        if !live {
            return false;
        }
        Self::update_current(&mut st, me, |c| c.compensated = false);
        st.counters.recounted += 1;
        self.note_saturation(&st);
        true
    }

    /// Sets the adaptive places (README.md: "Adaptive places") to `n`,
    /// at most the target; more room is served at once.
    pub(crate) fn set_adaptive(&self, n: usize) {
        let n = n.min(self.cfg.target.unwrap_or(0));
        let mut st = self.lock();
        if st.adaptive == n {
            return;
        }
        let more = n > st.adaptive;
        st.adaptive = n;
        if more {
            let mut wakes = Wakes::default();
            self.dispatch(&mut st, &mut wakes);
            self.wake(st, wakes);
        }
    }

    /// The pool's started workers and their thread ids.
    pub(crate) fn worker_tids(&self) -> Vec<(u64, i32)> {
        self.lock()
            .workers
            .iter()
            .filter_map(|(no, w)| Some((*no, *w.rec.as_ref()?.tid.get()?)))
            .collect()
    }

    /// Worker `me`'s job and its age, if the pool is saturated now (work
    /// waits for room), the worker is thread `tid`, its job counts as
    /// running and may be compensated, and its closure runs (for a switch
    /// record of `tid`: is it asleep in such a job's user code, and does
    /// anyone need its place?).
    pub(crate) fn watched_job(&self, me: u64, tid: i32) -> Option<(u64, Duration)> {
        let st = self.lock();
        if !self.saturated(&st) {
            return None;
        }
        let (c, t) = st.workers.get(&me)?.in_closure()?;
        (t == tid && c.in_running() && c.watched()).then(|| (c.job, c.started.elapsed()))
    }

    /// The liveness backstop: work has waited for room too long, so allow
    /// one more running job beyond the target (until the queue empties).
    pub(crate) fn backstop(&self) {
        let mut st = self.lock();
        if !self.saturated(&st) {
            return;
        }
        st.extra += 1;
        st.counters.backstops += 1;
        st.last_start = Instant::now();
        let mut wakes = Wakes::default();
        self.dispatch(&mut st, &mut wakes);
        self.wake(st, wakes);
    }

    /// The workers running a job whose stop was requested (a worker's
    /// state follows its job: `stopping`).
    pub(crate) fn stopping_workers(&self) -> Vec<crate::record::ThreadId> {
        let st = self.lock();
        st.workers
            .values()
            .filter(|w| w.current.as_ref().is_some_and(|c| c.stop_requested()))
            .filter_map(|w| Some(w.rec.as_ref()?.id))
            .collect()
    }
}

impl<J: QueuedJob> Core<J> {
    /// The kinds of job the pool has seen block, for the snapshot.
    pub(crate) fn kinds(&self) -> Vec<crate::pool::stats::JobKind> {
        self.lock().learned.view()
    }

    /// How long ago a counted job last started (the liveness backstop).
    pub(crate) fn since_last_start(&self) -> Duration {
        self.lock().last_start.elapsed()
    }
}
