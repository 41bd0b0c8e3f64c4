//! The identities of README.md "Invariants", checked at every unlock in
//! debug, loom and shuttle builds (`check_invariants`, O(1)), and the
//! walks over every worker and queued job that only the models run
//! (`check_slots`).

#[cfg(any(loom, shuttle))]
use super::slot::{Current, Ticket};
#[cfg(any(loom, shuttle))]
use super::state::PerClass;
use super::state::{Class, Config, State};

impl<J> State<J> {
    /// The identities of README.md "Invariants", O(1): run at every unlock
    /// in debug builds and under the models. Panics naming the broken one.
    pub(crate) fn check_invariants(&self, cfg: &Config) {
        let c = &self.counters;
        // I1: every accepted job is in exactly one place (a cancelled one
        // left in a queue counts as cancelled only).
        self.queue.check();
        self.urgent.check();
        let accounted =
            c.completed + c.panicked + c.cancelled + self.busy as u64 + self.queued() as u64;
        assert_eq!(
            c.submitted, accounted,
            "I1 submitted == completed + panicked + cancelled + busy + queued"
        );
        // I2: the pool's OS threads never exceed the cap, and every
        // thread is in one of the counted conditions at most once.
        assert!(
            self.threads <= cfg.max_threads,
            "I2 threads {} > max_threads {}",
            self.threads,
            cfg.max_threads
        );
        assert!(
            self.spawning + self.exiting + self.busy + self.idle() + self.notify.total()
                <= self.threads,
            "I2 spawning {} + exiting {} + busy {} + idle {} + notified {} > threads {}",
            self.spawning,
            self.exiting,
            self.busy,
            self.idle(),
            self.notify.total(),
            self.threads
        );
        assert!(
            self.exited.len() <= self.exiting,
            "I2 a pending exit handle is counted"
        );
        // I3: running counts a subset of the busy workers.
        assert!(
            self.running <= self.busy,
            "I3 running {} > busy {}",
            self.running,
            self.busy
        );
        // The adaptive places are bounded by the target (README.md:
        // "Adaptive places").
        assert!(
            self.adaptive <= cfg.target.unwrap_or(0),
            "adaptive places {} > target",
            self.adaptive
        );
        // I4: promises: reserved threads are being created; a promise per
        // class never outnumbers... the threads that hold it.
        assert!(self.coming.total() <= self.spawning, "I4 coming > spawning");
        assert!(self.spinning <= 1, "I4 at most one spinner");
        // I5: the queue bound, per class (a promise serves only its class).
        if let Some(n) = cfg.wait_bound() {
            if !self.shutdown {
                let unserved = self.unserved(Class::Counted) + self.unserved(Class::Urgent);
                assert!(
                    unserved <= n,
                    "I5 {unserved} jobs wait with no worker on its way, bound {n}"
                );
            }
        }
        if self.shutdown {
            assert_eq!(self.queued(), 0, "I1 a shut-down pool keeps no queue");
        }
    }
}

#[cfg(any(loom, shuttle))]
impl<J: super::QueuedJob> State<J> {
    /// The walks over all workers and queued jobs (models only): the
    /// counts agree with what they summarise.
    pub(crate) fn check_slots(&self) {
        let mut notify = PerClass::default();
        let mut coming = PerClass::default();
        let mut running = 0;
        self.queue.check_marks();
        self.urgent.check_marks();
        self.learned.check();
        for (no, w) in &self.workers {
            if let Some(Ticket::Job(c)) = w.ticket {
                *notify.get_mut(c) += 1;
                assert!(
                    !self.idle_stack.contains(no),
                    "I4 a claimed worker is still parked"
                );
            }
            if let Some(c) = w.coming {
                *coming.get_mut(c) += 1;
            }
            if w.current.as_ref().is_some_and(Current::in_running) {
                running += 1;
            }
        }
        for no in &self.idle_stack {
            let w = self.workers.get(no).expect("I4 a parked worker has a slot");
            assert!(w.ticket.is_none(), "I4 a parked worker holds a ticket");
        }
        assert_eq!(notify, self.notify, "I4 notify counts the Job tickets");
        assert_eq!(coming, self.coming, "I4 coming counts the reserved slots");
        assert_eq!(
            running, self.running,
            "I3 running counts the counted, unblocked jobs"
        );
        assert!(
            self.workers.len() <= self.threads,
            "I2 a slot per thread at most"
        );
    }
}
