//! One channel between two partition processes: a Unix-domain stream
//! connection carrying messages both ways. Each side runs a *writer*
//! thread (its messages, paced; then END; acknowledgements of what it
//! received) and a *reader* thread (the peer's frames into the local
//! receiving [`Channel`], whose bounded entries give backpressure: a
//! reader waiting for an entry stops reading, the socket fills, the peer's
//! writer waits). The protocol is in `xpc-sim/README.md`.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use threadward::Thread;

use crate::channel::{mono_ns, Channel, Msg, RecordSummary};
use crate::config::FaultKind;
use crate::wire::{write_frame, Frame, FrameReader};

/// What the writer sends.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The channel's identity, stamped on every message.
    pub(crate) partition: usize,
    pub(crate) channel: usize,
    /// The first seq this incarnation sends.
    pub(crate) base: u64,
    /// Seqs up to this are sent over the whole run.
    pub(crate) total: u64,
    /// Over this long.
    pub(crate) duration: Duration,
    /// Send acknowledgements of the local receiving side (the remote
    /// partition does; the local side keeps its own record).
    pub(crate) acks: bool,
    /// A transport fault (drop, repeat, reorder) at seq `fault_at`.
    pub(crate) fault: Option<FaultKind>,
    pub(crate) fault_at: u64,
}

/// State both threads and the owner share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Finish: the writer sends END (if not yet), then (with acks) the
    /// final acknowledgement once the reader is done, and closes its side.
    pub(crate) finish: AtomicBool,
    /// The writer's log: seqs below this were sent.
    pub(crate) sent: AtomicU64,
    /// One past the highest seq read from the peer (where its next
    /// incarnation continues).
    pub(crate) next_seq: AtomicU64,
    /// Frames that ended mid-way (the peer died writing).
    pub(crate) torn: AtomicU64,
    /// The peer's END, once seen.
    pub(crate) peer_end: Mutex<Option<u64>>,
    /// The peer's latest acknowledgement, and whether it was its last.
    pub(crate) peer_ack: Mutex<Option<(RecordSummary, bool)>>,
    /// The reader reached the end of the stream.
    reader_done: Mutex<bool>,
    reader_done_cv: Condvar,
}

impl Shared {
    fn set_reader_done(&self) {
        *self.reader_done.lock().unwrap() = true;
        self.reader_done_cv.notify_all();
    }
}

/// A running link.
pub(crate) struct Link {
    pub(crate) rx: Arc<Channel>,
    pub(crate) shared: Arc<Shared>,
    stream: UnixStream,
    writer: Option<Thread<()>>,
    reader: Option<Thread<Option<FrameReader>>>,
}

impl Link {
    /// Starts the writer and reader threads on `stream` (the Hello is
    /// already exchanged).
    pub(crate) fn start(stream: UnixStream, rx: Arc<Channel>, plan: Plan) -> std::io::Result<Link> {
        let shared = Arc::new(Shared::default());
        shared.sent.store(plan.base, Relaxed);
        let reader = FrameReader::new(stream.try_clone()?)?;
        let name = format!("p{}c{}", plan.partition, plan.channel);
        let (rx2, sh) = (rx.clone(), shared.clone());
        let reader = threadward::spawn(format!("xpc-rd-{name}"), move |cx| {
            read_loop(cx, reader, &rx2, &sh)
        })?;
        let (rx2, sh, out) = (rx.clone(), shared.clone(), stream.try_clone()?);
        let writer = match threadward::spawn(format!("xpc-wr-{name}"), move |cx| {
            write_loop(cx, &out, &rx2, &sh, &plan)
        }) {
            Ok(w) => w,
            Err(e) => {
                let _ = reader.stop();
                return Err(e);
            }
        };
        Ok(Link {
            rx,
            shared,
            stream,
            writer: Some(writer),
            reader: Some(reader),
        })
    }

    /// Asks the writer to finish (END, and with acks the final
    /// acknowledgement after the reader is done).
    pub(crate) fn finish(&self) {
        self.shared.finish.store(true, Relaxed);
    }

    /// Waits up to `deadline` for both threads to end by themselves (the
    /// peer closed its side); true if they did. Stops them either way.
    pub(crate) fn wait_ended(&mut self, deadline: Instant) -> bool {
        let mut ended = true;
        for t in [
            self.writer.as_ref().map(|w| w.stopper()),
            self.reader.as_ref().map(|r| r.stopper()),
        ]
        .into_iter()
        .flatten()
        {
            while !t.is_finished() {
                if Instant::now() >= deadline {
                    ended = false;
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Stopped mid-stream (the peer did not close in time): take what
        // is there now, in flight, without waiting.
        self.stop_and_drain(Some(Instant::now()));
        ended
    }

    /// The peer is dead (killed and reaped): stops both threads, then
    /// reads what it wrote before dying to the end of the stream, counting
    /// its messages as dropped (in flight).
    pub(crate) fn peer_died(&mut self) {
        self.stop_and_drain(None);
    }

    /// Stops both threads, then reads what is left of the stream (until
    /// its end, or `deadline`), every frame absorbed as in flight; a
    /// stream ending inside a frame counts a torn frame.
    fn stop_and_drain(&mut self, deadline: Option<Instant>) {
        if let Some(w) = self.writer.take() {
            let _ = w.stop();
        }
        let Some(mut rest) = self.reader.take().and_then(|r| r.stop().ok().flatten()) else {
            return; // the reader had already read to the end
        };
        loop {
            match rest.next_until(deadline) {
                Ok(Some(f)) => self.absorb(f),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.shared.torn.fetch_add(1, Relaxed);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// A frame read after the reader stopped: messages are in flight.
    fn absorb(&self, f: Frame) {
        match f {
            Frame::Msg(m) => {
                self.shared.next_seq.fetch_max(m.seq + 1, Relaxed);
                self.rx.drop_remote(m);
            }
            Frame::End { sent } => {
                *self.shared.peer_end.lock().unwrap() = Some(sent);
            }
            Frame::Ack { rec, last } => *self.shared.peer_ack.lock().unwrap() = Some((rec, last)),
            _ => {}
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(w) = self.writer.take() {
            let _ = w.stop();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.stop();
        }
    }
}

/// The reader: the peer's messages into the local channel (waiting for an
/// entry: backpressure), or dropped once the channel closed; END and
/// acknowledgements recorded. Returns the reader if stopped mid-stream.
fn read_loop(
    cx: &threadward::Context,
    mut r: FrameReader,
    rx: &Arc<Channel>,
    sh: &Shared,
) -> Option<FrameReader> {
    loop {
        match r.next(cx) {
            Ok(Some(Frame::Msg(m))) => {
                sh.next_seq.fetch_max(m.seq + 1, Relaxed);
                if rx.deliver_remote(cx, m).is_err() {
                    rx.drop_remote(m);
                    if cx.should_stop() {
                        return Some(r);
                    }
                }
            }
            Ok(Some(Frame::End { sent })) => {
                *sh.peer_end.lock().unwrap() = Some(sent);
                rx.set_sender_log(sent);
            }
            Ok(Some(Frame::Ack { rec, last })) => {
                rx.note_progress();
                *sh.peer_ack.lock().unwrap() = Some((rec, last));
            }
            Ok(Some(other)) => tracing::warn!(?other, "unexpected frame on a channel"),
            Ok(None) => break,
            Err(_) if cx.should_stop() => return Some(r),
            Err(e) => {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    sh.torn.fetch_add(1, Relaxed);
                }
                tracing::debug!(error = %e, "channel connection ended");
                break;
            }
        }
    }
    sh.set_reader_done();
    None
}

/// The writer: paced messages (with an injected transport fault, if any),
/// END when all are sent or on finish, acknowledgements while they change,
/// then on finish the final acknowledgement and the end of its side.
fn write_loop(cx: &threadward::Context, out: &UnixStream, rx: &Channel, sh: &Shared, plan: &Plan) {
    let start = Instant::now();
    let mut n = plan.base;
    let mut held: Option<Msg> = None;
    let mut last_ack = None;
    let mut end_sent = false;
    let span = plan.total.saturating_sub(plan.base) as f64;
    let send = |f: Frame| write_frame(cx, out, &f);
    loop {
        let frac = (start.elapsed().as_secs_f64() / plan.duration.as_secs_f64()).min(1.0);
        let target = plan.base + (span * frac) as u64;
        while n < target && !sh.finish.load(Relaxed) {
            let msg = Msg {
                partition: plan.partition,
                channel: plan.channel,
                seq: n,
                sent_ns: mono_ns(),
            };
            let r = match plan.fault.filter(|_| n == plan.fault_at) {
                Some(FaultKind::Drop) => Ok(()),
                Some(FaultKind::Repeat) => {
                    send(Frame::Msg(msg)).and_then(|()| send(Frame::Msg(msg)))
                }
                Some(FaultKind::Reorder) => {
                    held = Some(msg);
                    Ok(())
                }
                _ => send(Frame::Msg(msg)).and_then(|()| match held.take() {
                    Some(h) => send(Frame::Msg(h)),
                    None => Ok(()),
                }),
            };
            if r.is_err() {
                return; // stopped, or the peer is gone
            }
            n += 1;
            sh.sent.store(n, Relaxed);
        }
        let finishing = sh.finish.load(Relaxed);
        if (n >= plan.total || finishing) && !end_sent {
            if send(Frame::End { sent: n }).is_err() {
                return;
            }
            end_sent = true;
        }
        if plan.acks {
            let rec = rx.summary();
            if last_ack != Some(rec) {
                if send(Frame::Ack { rec, last: false }).is_err() {
                    return;
                }
                last_ack = Some(rec);
            }
        }
        if finishing {
            if plan.acks {
                // The final record: after every frame of the peer's is read.
                let done = sh.reader_done.lock().unwrap();
                if cx.wait_while(&sh.reader_done_cv, done, |d| !*d).is_err() {
                    return;
                }
                let rec = rx.summary();
                if send(Frame::Ack { rec, last: true }).is_err() {
                    return;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Write);
            return;
        }
        if cx.sleep(Duration::from_millis(2)).is_err() {
            return;
        }
    }
}
