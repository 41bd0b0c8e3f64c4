//! The queues jobs wait in (README.md: "Cancelling a queued job"): one per
//! class, oldest first. A cancelled job stays where it is, marked dead,
//! until a pop or a drain passes it, so a cancel costs O(1) and never
//! scans (100 000 cancels of a 100 000-job queue would otherwise be
//! O(n²)).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};

use super::QueuedJob;

/// Where a job is with respect to its pool's queue. Changed and read only
/// under the pool lock, or by a submit into the inbox under the inbox's
/// lock, which a cancel's kill holds as well; so `Relaxed` suffices (the
/// locks order them).
#[derive(Debug, Default)]
pub(crate) struct QueueMark(AtomicU8);

/// Not in a queue: not submitted yet, taken, drained or withdrawn.
const OUT: u8 = 0;
/// Waiting in the queue whose tag this is (1: counted, 3: urgent); the
/// tag + 1 means cancelled while waiting there: still in that queue, no
/// longer counted. So a cancel finds the job's queue from its mark.
pub(crate) const COUNTED: u8 = 1;
pub(crate) const URGENT: u8 = 3;

/// Refused from the inbox (its submit raced a shutdown or a close).
const REFUSED: u8 = 5;

impl QueueMark {
    /// Marks a job for the counted queue before it goes to the inbox (its
    /// submitter has its memory at hand; the lock holder that moves it
    /// into the queue does not touch it).
    pub(crate) fn enter_counted(&self) {
        self.0.store(COUNTED, Ordering::Relaxed);
    }

    /// The job was refused from the inbox (README.md: "Submit without the
    /// pool lock").
    pub(crate) fn refuse(&self) {
        self.0.store(REFUSED, Ordering::Relaxed);
    }

    /// Whether the job was refused from the inbox (the shuttle models'
    /// record).
    #[cfg(all(test, shuttle))]
    pub(crate) fn is_refused(&self) -> bool {
        self.0.load(Ordering::Relaxed) == REFUSED
    }

    /// Leaves the queue tagged `tag`; whether the job was dead there.
    fn leave(&self, tag: u8) -> bool {
        self.0.swap(OUT, Ordering::Relaxed) == tag + 1
    }
}

/// One class's queue: its jobs, and how many of them are dead.
pub(crate) struct JobQueue<J> {
    jobs: VecDeque<J>,
    dead: usize,
    /// What its jobs' marks say while they wait here.
    tag: u8,
}

impl<J> JobQueue<J> {
    pub(crate) fn new(tag: u8) -> JobQueue<J> {
        JobQueue {
            jobs: VecDeque::new(),
            dead: 0,
            tag,
        }
    }

    /// Jobs waiting (the dead ones are not).
    pub(crate) fn len(&self) -> usize {
        self.jobs.len() - self.dead
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// I1's queue part, O(1): the dead are a part of the jobs.
    pub(crate) fn check(&self) {
        assert!(
            self.dead <= self.jobs.len(),
            "I1 more dead jobs than queued"
        );
    }
}

impl<J: QueuedJob> JobQueue<J> {
    pub(crate) fn push(&mut self, job: J) {
        job.mark().0.store(self.tag, Ordering::Relaxed);
        self.jobs.push_back(job);
    }

    /// Pushes a job whose submitter marked it for this queue already
    /// ([`QueueMark::enter_counted`]): the job's memory is not touched
    /// here, under the pool lock.
    pub(crate) fn push_marked(&mut self, job: J) {
        self.jobs.push_back(job);
    }

    /// The oldest waiting job. Dead jobs passed on the way are dropped
    /// here, under the pool lock: that runs no user code, because a
    /// cancel drops the closure before it marks the job dead, and a
    /// cancelled job holds no value and no waker.
    pub(crate) fn pop(&mut self) -> Option<J> {
        loop {
            let job = self.jobs.pop_front()?;
            if !job.mark().leave(self.tag) {
                return Some(job);
            }
            self.dead -= 1;
        }
    }

    /// Takes every waiting job out (a shutdown); the dead ones are
    /// dropped as in [`pop`](Self::pop).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = J> + '_ {
        self.dead = 0;
        let tag = self.tag;
        self.jobs.drain(..).filter(move |j| !j.mark().leave(tag))
    }

    /// Marks the job whose mark is `mark` dead if it waits in this queue
    /// (a cancel); whether it did. O(1).
    pub(crate) fn kill(&mut self, mark: &QueueMark) -> bool {
        let was =
            mark.0
                .compare_exchange(self.tag, self.tag + 1, Ordering::Relaxed, Ordering::Relaxed);
        if was.is_ok() {
            self.dead += 1;
        }
        was.is_ok()
    }

    /// Takes out every waiting job that `pick` chooses, oldest first (a
    /// kind learned to block is promoted: O(queue), once per learning).
    pub(crate) fn extract(&mut self, pick: impl Fn(&J) -> bool) -> Vec<J> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.jobs.len());
        for job in self.jobs.drain(..) {
            let waiting = job.mark().0.load(Ordering::Relaxed) == self.tag;
            if waiting && pick(&job) {
                job.mark().leave(self.tag);
                out.push(job);
            } else {
                kept.push_back(job);
            }
        }
        self.jobs = kept;
        out
    }

    /// Takes job `id` out wherever it waits (a submit whose thread the OS
    /// refused takes its own job back: rare, so a scan).
    pub(crate) fn remove(&mut self, id: u64) -> Option<J> {
        let pos = self
            .jobs
            .iter()
            .position(|j| j.id() == id && j.mark().0.load(Ordering::Relaxed) == self.tag)?;
        let job = self.jobs.remove(pos)?;
        job.mark().leave(self.tag);
        Some(job)
    }

    /// The walk (models only): `dead` counts exactly the dead marks, and
    /// every other job in the queue is marked waiting.
    #[cfg(any(loom, shuttle))]
    pub(crate) fn check_marks(&self) {
        let dead = self
            .jobs
            .iter()
            .filter(|j| j.mark().0.load(Ordering::Relaxed) == self.tag + 1)
            .count();
        assert_eq!(dead, self.dead, "I1 the dead count matches the marks");
        assert!(
            self.jobs.iter().all(|j| {
                let m = j.mark().0.load(Ordering::Relaxed);
                m == self.tag || m == self.tag + 1
            }),
            "I1 a queued job is marked for another place"
        );
    }
}
