//! A channel between the local partition and one remote partition: a
//! bounded message queue, a sender that waits for a free entry, and a
//! delivery pool (XPC's per-channel kthreads). The protocol, and how the
//! receiver's record proves exactly-once in-order delivery, are in
//! `xpc-sim/README.md`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use threadward::{Context, Pool, SpawnError};

use crate::config::{Callback, Config, FaultKind, FOREIGN_BLOCK_MAX};

/// Counters shared by every channel of one run (live progress and
/// latency); the proof itself is in each channel's [`ChannelReport`].
#[derive(Debug)]
pub(crate) struct Totals {
    pub(crate) sent: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Anything moving: deliveries here, acknowledgements from remote
    /// partitions (the run's stall watchdog reads it).
    pub(crate) progress: AtomicU64,
    pub(crate) latency_us: Mutex<Histogram<u64>>,
    /// One report per channel, added when it disconnects.
    pub(crate) channels: Mutex<Vec<ChannelReport>>,
    /// Channels or contact threads that could not start.
    pub(crate) failures: Mutex<Vec<String>>,
}

impl Totals {
    pub(crate) fn new() -> Totals {
        Totals {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            latency_us: Mutex::new(Histogram::new(3).expect("valid sigfig")),
            channels: Mutex::default(),
            failures: Mutex::default(),
        }
    }
}

/// What a channel did and what its receiver recorded, checked against its
/// sender's log and its pool's counts.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ChannelReport {
    /// `p<partition>c<channel>`.
    pub name: String,
    /// The sender's log: messages with seq 0..sent were sent.
    pub sent: u64,
    /// Messages the receiver took off the queue (copies included).
    pub received: u64,
    /// Messages still queued when the channel disconnected.
    pub dropped_on_disconnect: u64,
    /// Sent, never received, not dropped on disconnect.
    pub lost: u64,
    /// A seq received (or dropped) a second time.
    pub duplicates: u64,
    /// A seq received after a higher one.
    pub reordered: u64,
    /// A message stamped for another channel.
    pub misrouted: u64,
    /// Delivery jobs that found no message to take.
    pub empty_activations: u64,
    /// Most entries taken at once (queued + in a callback).
    pub peak_entries: usize,
    /// Times the pool refused a delivery job (the sender retried).
    pub refused: u64,
    /// Delivery threads created by this channel's pool.
    pub threads_created: u64,
    /// Delivery jobs run (completed or panicked).
    pub jobs_run: u64,
    /// Delivery threads still running past the disconnect deadline.
    pub stragglers: u64,
    /// Set when messages sat queued with nothing delivered for the stall
    /// bound: a lost delivery job.
    pub stalled: Option<String>,
    /// Disagreements between this channel's jobs and its pool's counts.
    pub pool_mismatch: Vec<String>,
}

impl ChannelReport {
    /// What is wrong with this channel, each naming it.
    pub fn problems(&self) -> Vec<String> {
        let n = &self.name;
        let mut p = Vec::new();
        let mut count = |what: &str, v: u64| {
            if v > 0 {
                p.push(format!("{n}: {v} {what}"));
            }
        };
        count("lost (sent, never received, not dropped)", self.lost);
        count("duplicated", self.duplicates);
        count("reordered", self.reordered);
        count("misrouted", self.misrouted);
        count(
            "delivery jobs found nothing to deliver (a job ran twice?)",
            self.empty_activations,
        );
        count(
            "delivery threads did not stop by the deadline",
            self.stragglers,
        );
        if let Some(s) = &self.stalled {
            p.push(format!("{n}: stalled: {s}"));
        }
        for m in &self.pool_mismatch {
            p.push(format!("{n}: {m}"));
        }
        p
    }
}

/// One message as its sender stamped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) partition: usize,
    pub(crate) channel: usize,
    pub(crate) seq: u64,
    /// CLOCK_MONOTONIC, nanoseconds: comparable across processes.
    pub(crate) sent_ns: u64,
}

/// CLOCK_MONOTONIC now, in nanoseconds (system-wide, unlike `Instant`'s
/// opaque value, so a receiver in another process can use it).
pub(crate) fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// A receiver's record in numbers (what a remote partition acknowledges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RecordSummary {
    /// Seqs accounted for (received or dropped), counting from 0.
    pub(crate) accounted: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) misrouted: u64,
    pub(crate) empty_activations: u64,
    /// Messages queued or in a callback now.
    pub(crate) pending: u64,
}

/// The receiver's record of which seqs it accounted for: every seq below
/// `low`, and those in `above` (memory grows with the disorder only).
#[derive(Debug, Default)]
struct Record {
    low: u64,
    above: BTreeSet<u64>,
    highest: Option<u64>,
    received: u64,
    dropped: u64,
    duplicates: u64,
    reordered: u64,
    misrouted: u64,
}

impl Record {
    /// Marks `seq` accounted for; false if it already was.
    fn account(&mut self, seq: u64) -> bool {
        if seq < self.low || !self.above.insert(seq) {
            return false;
        }
        while self.above.remove(&self.low) {
            self.low += 1;
        }
        true
    }

    fn receive(&mut self, seq: u64) {
        self.received += 1;
        if !self.account(seq) {
            self.duplicates += 1;
            return;
        }
        if self.highest.is_some_and(|h| seq < h) {
            self.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
    }

    fn drop_on_disconnect(&mut self, seq: u64) {
        if self.account(seq) {
            self.dropped += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// A record whose seqs below `base` were settled by an earlier
    /// incarnation of the channel (a restarted partition).
    fn starting_at(base: u64) -> Record {
        Record {
            low: base,
            ..Record::default()
        }
    }

    /// Seqs below `sent` never accounted for.
    fn lost(&self, sent: u64) -> u64 {
        let accounted = self.low.min(sent) + self.above.range(..sent).count() as u64;
        sent - accounted
    }

    fn accounted(&self) -> u64 {
        self.low + self.above.len() as u64
    }
}

struct State {
    /// The receiving side's queue, in transport order.
    queue: VecDeque<Msg>,
    /// Entries taken: queued or in a callback (XPC's message-queue slots).
    taken: usize,
    peak_taken: usize,
    disconnected: bool,
    rng: u64,
    record: Record,
    empty_pops: u64,
    /// Since when the head of the queue has waited for a pop.
    head_since: Instant,
    stalled: Option<String>,
    /// A message held back by the reorder fault.
    held: Option<Msg>,
    /// Messages `close` counted dropped before their job was submitted.
    orphaned: u64,
    /// Set by `close`: the pool's counts and the shutdown's stragglers.
    closed: Option<(threadward::PoolStats, u64, u64)>,
}

/// The sender gave up: its thread was stopped or the channel disconnected.
#[derive(Debug)]
pub(crate) struct Closed;

/// One open channel.
pub(crate) struct Channel {
    /// The remote partition (sender side, or receiver side for an
    /// outgoing channel's report).
    partition: usize,
    /// Name suffix for a restarted partition's channel (`r1`, ...).
    suffix: String,
    /// Seqs below this were settled by an earlier incarnation.
    base: u64,
    index: usize,
    state: Mutex<State>,
    /// Notified when an entry is freed or the channel disconnects.
    entry_freed: Condvar,
    pool: Pool,
    totals: Arc<Totals>,
    /// The sender's log: seqs 0..sent were sent. Written by the sender only.
    sent: AtomicU64,
    /// Delivery jobs the pool accepted.
    activations: AtomicU64,
    refused: AtomicU64,
    entries: usize,
    fault: Option<FaultKind>,
    fault_at: u64,
    block_mean: Duration,
    callback: Callback,
    long_every: u64,
    long_block: Duration,
}

impl Channel {
    pub(crate) fn open(
        partition: usize,
        index: usize,
        cfg: &Config,
        seed: u64,
        totals: Arc<Totals>,
    ) -> std::io::Result<Arc<Channel>> {
        Channel::open_at(partition, index, 0, String::new(), cfg, seed, totals)
    }

    /// Opens a channel whose seqs below `base` an earlier incarnation
    /// settled; `suffix` tells incarnations apart in reports.
    pub(crate) fn open_at(
        partition: usize,
        index: usize,
        base: u64,
        suffix: String,
        cfg: &Config,
        seed: u64,
        totals: Arc<Totals>,
    ) -> std::io::Result<Arc<Channel>> {
        let pool = Pool::builder()
            .name(format!("xpc{partition}c{index}{suffix}"))
            .min_idle(1.min(cfg.idle_limit))
            // XPC's idle_limit: a delivery thread beyond it exits at once.
            .max_idle(cfg.idle_limit)
            .max_threads(cfg.assigned_limit)
            .idle_timeout(Duration::from_millis(100))
            .stack_size(64 * 1024)
            .drop_deadline(Duration::from_secs(2))
            .build()?;
        let fault = cfg
            .faults
            .iter()
            .find(|f| f.partition == partition && f.channel == index)
            .map(|f| f.kind);
        Ok(Arc::new(Channel {
            partition,
            suffix,
            base,
            index,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                taken: 0,
                peak_taken: 0,
                disconnected: false,
                rng: seed | 1,
                record: Record::starting_at(base),
                empty_pops: 0,
                head_since: Instant::now(),
                stalled: None,
                held: None,
                orphaned: 0,
                closed: None,
            }),
            entry_freed: Condvar::new(),
            pool,
            totals,
            sent: AtomicU64::new(base),
            activations: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            entries: cfg.msg_entries,
            fault,
            fault_at: cfg.messages / 2,
            block_mean: cfg.callback_block,
            callback: cfg.callback,
            long_every: cfg.long_block_every.max(1),
            long_block: cfg.long_block,
        }))
    }

    pub(crate) fn name(&self) -> String {
        format!("p{}c{}{}", self.partition, self.index, self.suffix)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_sent(&self, seq: u64) {
        self.sent.store(seq + 1, Relaxed);
        self.totals.sent.fetch_add(1, Relaxed);
    }

    /// Sends the next message: waits (stop-aware) for a free entry, queues
    /// it and submits its delivery job. Only the channel's one sender calls
    /// this. `Err(Closed)` once the sender is stopped or the channel
    /// disconnected.
    pub(crate) fn send(self: &Arc<Self>, cx: &Context) -> Result<(), Closed> {
        let seq = self.sent.load(Relaxed);
        let msg = Msg {
            partition: self.partition,
            channel: self.index,
            seq,
            sent_ns: mono_ns(),
        };
        let fault = self.fault.filter(|_| seq == self.fault_at);
        self.enqueue(cx, msg, fault)?;
        self.log_sent(seq);
        Ok(())
    }

    /// A message that arrived from a remote partition, stamped there:
    /// queued like a local send (waiting stop-aware for an entry). Only the
    /// job faults (`lose-job`, `double-job`) apply here; the transport
    /// faults are the remote sender's.
    pub(crate) fn deliver_remote(self: &Arc<Self>, cx: &Context, msg: Msg) -> Result<(), Closed> {
        let fault = self
            .fault
            .filter(|f| matches!(f, FaultKind::LoseJob | FaultKind::DoubleJob))
            .filter(|_| msg.seq == self.fault_at);
        self.enqueue(cx, msg, fault)
    }

    /// A message that arrived after the channel closed (in flight at an
    /// unload or a partition's death): accounted as dropped.
    pub(crate) fn drop_remote(&self, msg: Msg) {
        let mut st = self.lock();
        if msg.partition != self.partition || msg.channel != self.index {
            st.record.misrouted += 1;
        } else {
            st.record.drop_on_disconnect(msg.seq);
        }
    }

    /// Something moved on this channel (a remote acknowledgement).
    pub(crate) fn note_progress(&self) {
        self.totals.progress.fetch_add(1, Relaxed);
    }

    /// The remote sender's log, as its END frame (or the frames read from
    /// a dead partition) says.
    pub(crate) fn set_sender_log(&self, sent: u64) {
        self.sent.store(sent, Relaxed);
    }

    /// Waits for an entry, applies `fault`, queues `msg` and submits its
    /// delivery job(s); a refused job takes the message back out and is
    /// retried a moment later.
    fn enqueue(
        self: &Arc<Self>,
        cx: &Context,
        msg: Msg,
        fault: Option<FaultKind>,
    ) -> Result<(), Closed> {
        let seq = msg.seq;
        loop {
            let st = self.lock();
            let mut st = cx
                .wait_while(&self.entry_freed, st, |s| {
                    !s.disconnected && s.taken >= self.entries
                })
                .map_err(|_| Closed)?;
            if st.disconnected {
                return Err(Closed);
            }
            let push = |st: &mut State, m: Msg| {
                if st.queue.is_empty() {
                    st.head_since = Instant::now();
                }
                st.queue.push_back(m);
                st.taken += 1;
                st.peak_taken = st.peak_taken.max(st.taken);
            };
            let jobs = match fault {
                Some(FaultKind::Drop) => 0,
                Some(FaultKind::Reorder) => {
                    st.held = Some(msg);
                    0
                }
                Some(FaultKind::Repeat) => {
                    push(&mut st, msg);
                    push(&mut st, msg);
                    2
                }
                Some(FaultKind::LoseJob) => {
                    push(&mut st, msg);
                    0
                }
                Some(FaultKind::DoubleJob) => {
                    push(&mut st, msg);
                    2
                }
                None => {
                    push(&mut st, msg);
                    match st.held.take() {
                        Some(held) => {
                            push(&mut st, held);
                            2
                        }
                        None => 1,
                    }
                }
            };
            drop(st);
            let mut refusal = None;
            for _ in 0..jobs {
                let me = self.clone();
                match self.pool.spawn(move |cx| me.deliver_one(cx)) {
                    Ok(job) => {
                        drop(job); // detach: the receiver's record is the result
                        self.activations.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        refusal = Some(e);
                        break;
                    }
                }
            }
            let Some(e) = refusal else {
                return Ok(());
            };
            // Only a plain send gets here in practice: take the message
            // back out (it is the newest, every earlier one has its job)
            // and try again, or give up if the channel closed.
            self.refused.fetch_add(1, Relaxed);
            if fault.is_none() {
                let mut st = self.lock();
                if st.queue.back().is_some_and(|m| m.seq == seq) {
                    st.queue.pop_back();
                    st.taken -= 1;
                } else if st.disconnected && jobs == 1 {
                    // `close` ran between the push and the spawn: it
                    // already counted the message dropped (without a job
                    // to cancel). Accounted; not to be dropped again.
                    st.orphaned += 1;
                    return Ok(());
                }
            }
            if matches!(e, SpawnError::ShutDown) {
                return Err(Closed);
            }
            tracing::debug!(channel = %self.name(), error = %e, "delivery job refused; retrying");
            cx.sleep(Duration::from_millis(1)).map_err(|_| Closed)?;
        }
    }

    /// A delivery job (one activation): take the queue's head in order,
    /// record it, hand it to the user callback (which may block), then
    /// free its entry.
    fn deliver_one(&self, cx: &Context) {
        let (msg, block) = {
            let mut st = self.lock();
            let Some(msg) = st.queue.pop_front() else {
                st.empty_pops += 1;
                return;
            };
            st.head_since = Instant::now();
            if msg.partition != self.partition || msg.channel != self.index {
                st.record.misrouted += 1;
            } else {
                st.record.receive(msg.seq);
            }
            let block = self.block_time(&mut st.rng);
            (msg, block)
        };
        self.totals.delivered.fetch_add(1, Relaxed);
        self.totals.progress.fetch_add(1, Relaxed);
        let us = mono_ns().saturating_sub(msg.sent_ns) / 1000;
        let _ = self
            .totals
            .latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(us.max(1));
        // The XPNET-like user callback.
        match self.callback {
            // Blocks where the pool cannot see it: the pool must notice.
            Callback::Foreign => std::thread::sleep(block.min(FOREIGN_BLOCK_MAX)),
            Callback::Library => {
                let _ = cx.sleep(block);
            }
            Callback::Cpu => {
                let start = Instant::now();
                let mut x = msg.seq;
                while start.elapsed() < block && !cx.should_stop() {
                    for _ in 0..64 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
            }
        }
        {
            let mut st = self.lock();
            // A straggler finishing after disconnect finds `taken` reset.
            st.taken = st.taken.saturating_sub(1);
        }
        self.entry_freed.notify_one();
    }

    /// Exponential around the mean, and now and then a long block.
    fn block_time(&self, rng: &mut u64) -> Duration {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        if (*rng >> 11).is_multiple_of(self.long_every) {
            return self.long_block;
        }
        let u = ((*rng >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        self.block_mean.mul_f64(-u.ln())
    }

    /// Whether every queued message has been handed off and no callback runs.
    pub(crate) fn drained(&self) -> bool {
        self.lock().queue.is_empty() && self.pool.stats().busy == 0
    }

    /// Marks the channel stalled if its queue's head has waited longer than
    /// `bound` for a delivery job; true if it is stalled.
    pub(crate) fn check_stall(&self, bound: Duration) -> bool {
        let mut st = self.lock();
        if st.stalled.is_none() && !st.queue.is_empty() && st.head_since.elapsed() > bound {
            st.stalled = Some(format!(
                "{} message(s) queued, none taken for {bound:?} (a delivery job was lost)",
                st.queue.len()
            ));
            tracing::error!(channel = %self.name(), "delivery stalled");
        }
        st.stalled.is_some()
    }

    /// The receiver's record in numbers, for an acknowledgement.
    pub(crate) fn summary(&self) -> RecordSummary {
        let st = self.lock();
        let busy = if st.closed.is_some() {
            0
        } else {
            self.pool.stats().busy
        };
        RecordSummary {
            accounted: st.record.accounted(),
            received: st.record.received,
            dropped: st.record.dropped,
            duplicates: st.record.duplicates,
            reordered: st.record.reordered,
            misrouted: st.record.misrouted,
            empty_activations: st.empty_pops,
            pending: (st.queue.len() + busy) as u64,
        }
    }

    /// Disconnects and adds the channel's report to the totals.
    pub(crate) fn disconnect(&self, deadline: Duration) {
        self.close(deadline);
        self.report();
    }

    /// Closes the channel: no more sends, the pool is shut down (running
    /// callbacks are stopped), queued messages count as dropped. Messages
    /// that still arrive (remote, in flight) go to `drop_remote`.
    pub(crate) fn close(&self, deadline: Duration) {
        self.lock().disconnected = true;
        self.entry_freed.notify_all();
        let shutdown = self.pool.shutdown(deadline);
        let mut st = self.lock();
        let left: Vec<Msg> = st.queue.drain(..).collect();
        for m in &left {
            st.record.drop_on_disconnect(m.seq);
        }
        st.taken = 0;
        st.closed = Some((
            self.pool.stats(),
            left.len() as u64,
            shutdown.stragglers.len() as u64,
        ));
    }

    /// Checks the receiver's record against the sender's log and the
    /// pool's counts (after `close`) and adds the report to the totals.
    pub(crate) fn report(&self) {
        let st = self.lock();
        let Some((s, left, stragglers)) = st.closed else {
            return;
        };
        let sent = self.sent.load(Relaxed);
        let activations = self.activations.load(Relaxed);
        let mut pool_mismatch = Vec::new();
        if stragglers == 0 {
            if s.submitted != activations {
                pool_mismatch.push(format!(
                    "pool accepted {} jobs, the channel submitted {activations}",
                    s.submitted
                ));
            }
            if s.submitted != s.completed + s.panicked + s.cancelled {
                pool_mismatch.push(format!(
                    "jobs submitted {} != completed {} + panicked {} + cancelled {}",
                    s.submitted, s.completed, s.panicked, s.cancelled
                ));
            }
            let ran = st.record.received + st.record.misrouted + st.empty_pops;
            if s.completed + s.panicked != ran {
                pool_mismatch.push(format!(
                    "pool ran {} jobs, the receiver saw {ran} activations",
                    s.completed + s.panicked
                ));
            }
            if s.cancelled + st.orphaned != left {
                pool_mismatch.push(format!(
                    "{left} message(s) left queued but {} job(s) cancelled",
                    s.cancelled + st.orphaned
                ));
            }
        }
        let rec = &st.record;
        let report = ChannelReport {
            name: self.name(),
            sent: sent.saturating_sub(self.base),
            received: rec.received,
            dropped_on_disconnect: rec.dropped,
            lost: rec.lost(sent),
            duplicates: rec.duplicates,
            reordered: rec.reordered,
            misrouted: rec.misrouted,
            empty_activations: st.empty_pops,
            peak_entries: st.peak_taken,
            refused: self.refused.load(Relaxed),
            threads_created: s.threads_spawned,
            jobs_run: s.completed + s.panicked,
            stragglers,
            stalled: st.stalled.clone(),
            pool_mismatch,
        };
        drop(st);
        self.totals
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report);
    }
}

#[cfg(test)]
mod tests {
    use super::Record;

    #[test]
    fn record_classifies_every_kind_of_misdelivery() {
        let mut r = Record::default();
        for seq in [0, 1, 3, 2, 3, 5] {
            r.receive(seq);
        }
        r.drop_on_disconnect(6);
        r.drop_on_disconnect(5);
        assert_eq!(
            (r.received, r.duplicates, r.reordered, r.dropped),
            (6, 2, 1, 1)
        );
        // 0..=3, 5 and 6 accounted; 4 and 7 never seen.
        assert_eq!(r.lost(8), 2);
        assert_eq!(r.lost(4), 0);
        // In-order runs keep no set.
        let mut r = Record::default();
        for seq in 0..10_000 {
            r.receive(seq);
        }
        assert!(r.above.is_empty());
        assert_eq!(r.lost(10_000), 0);
    }
}
