//! A channel between the local partition and one remote partition: an
//! ordered message queue plus a delivery pool (XPC's per-channel kthreads).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use threadward::{Context, Pool, ShutdownReport};

use crate::config::Config;

/// Counters shared by every channel of one run.
#[derive(Debug)]
pub(crate) struct Totals {
    pub(crate) sent: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) out_of_order: AtomicU64,
    pub(crate) stragglers: AtomicU64,
    /// Delivery threads created, over all channel pools.
    pub(crate) threads_created: AtomicU64,
    /// Delivery jobs run, over all channel pools.
    pub(crate) jobs_run: AtomicU64,
    pub(crate) latency_us: Mutex<Histogram<u64>>,
}

impl Totals {
    pub(crate) fn new() -> Totals {
        Totals {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            stragglers: AtomicU64::new(0),
            threads_created: AtomicU64::new(0),
            jobs_run: AtomicU64::new(0),
            latency_us: Mutex::new(Histogram::new(3).expect("valid sigfig")),
        }
    }
}

struct Msg {
    seq: u64,
    sent_at: Instant,
}

struct State {
    queue: VecDeque<Msg>,
    next_seq: u64,
    /// The sequence number the next hand-off must carry.
    expected: u64,
    disconnected: bool,
    rng: u64,
}

/// One open channel.
pub(crate) struct Channel {
    state: Mutex<State>,
    pool: Pool,
    totals: Arc<Totals>,
    block_mean: Duration,
    long_every: u64,
    long_block: Duration,
}

impl Channel {
    pub(crate) fn open(
        src: usize,
        ch: usize,
        cfg: &Config,
        seed: u64,
        totals: Arc<Totals>,
    ) -> std::io::Result<Arc<Channel>> {
        let name = format!("xpc{src}c{ch}");
        let pool = Pool::builder()
            .name(name)
            .min_idle(1.min(cfg.idle_limit))
            .max_threads(cfg.assigned_limit)
            // XPC's idle_limit: extra idle threads leave soon.
            .idle_timeout(Duration::from_millis(100))
            .stack_size(64 * 1024)
            .drop_deadline(Duration::from_secs(2))
            .build()?;
        Ok(Arc::new(Channel {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                next_seq: 0,
                expected: 0,
                disconnected: false,
                rng: seed | 1,
            }),
            pool,
            totals,
            block_mean: cfg.callback_block,
            long_every: cfg.long_block_every.max(1),
            long_block: cfg.long_block,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the next message and submits one delivery job for it.
    /// Returns `false` once the channel is disconnected.
    pub(crate) fn send(self: &Arc<Self>) -> bool {
        {
            let mut st = self.lock();
            if st.disconnected {
                return false;
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            st.queue.push_back(Msg {
                seq,
                sent_at: Instant::now(),
            });
            self.totals.sent.fetch_add(1, Relaxed);
        }
        let me = self.clone();
        // A refused job (pool shut down by a racing disconnect) leaves its
        // message queued; `disconnect` accounts for it as dropped.
        if let Ok(job) = self.pool.spawn(move |cx| me.deliver_one(cx)) {
            drop(job); // detach
        }
        true
    }

    /// A delivery thread's work: take the next message in order, hand it to
    /// the user callback (which may block).
    fn deliver_one(&self, cx: &Context) {
        let (msg, block) = {
            let mut st = self.lock();
            let Some(msg) = st.queue.pop_front() else {
                return;
            };
            if msg.seq < st.expected {
                self.totals.duplicates.fetch_add(1, Relaxed);
            } else if msg.seq > st.expected {
                self.totals.out_of_order.fetch_add(1, Relaxed);
            }
            st.expected = msg.seq + 1;
            let block = self.block_time(&mut st.rng);
            (msg, block)
        };
        self.totals.delivered.fetch_add(1, Relaxed);
        let us = u64::try_from(msg.sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .totals
            .latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(us.max(1));
        // The XPNET-like user callback: blocks, but stoppably.
        let _ = cx.sleep(block);
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

    /// Whether every sent message has been handed off and no callback runs.
    pub(crate) fn drained(&self) -> bool {
        self.lock().queue.is_empty() && self.pool.stats().busy == 0
    }

    /// Disconnects: no more sends, the pool is shut down (running callbacks
    /// are stopped), messages never handed off count as dropped, and the
    /// pool's use is added to the totals.
    pub(crate) fn disconnect(&self, deadline: Duration) -> ShutdownReport {
        self.lock().disconnected = true;
        let report = self.pool.shutdown(deadline);
        let dropped = {
            let mut st = self.lock();
            let n = st.queue.len() as u64;
            st.queue.clear();
            n
        };
        self.totals.dropped.fetch_add(dropped, Relaxed);
        self.totals
            .stragglers
            .fetch_add(report.stragglers.len() as u64, Relaxed);
        let s = self.pool.stats();
        self.totals
            .threads_created
            .fetch_add(s.threads_spawned, Relaxed);
        self.totals
            .jobs_run
            .fetch_add(s.completed + s.panicked, Relaxed);
        report
    }
}
