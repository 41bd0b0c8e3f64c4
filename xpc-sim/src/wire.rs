//! Frames between partition processes over Unix-domain stream sockets:
//! fixed 80-byte frames (a tag and nine little-endian u64 fields), read and
//! written stop-aware (non-blocking socket + `Context::wait_readable` /
//! `wait_writable`), so a stop never waits on a silent or full peer.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use threadward::Context;

use crate::channel::{Msg, RecordSummary};

/// Bytes per frame.
pub(crate) const FRAME: usize = 80;

/// `Hello::channel` of the heartbeat connection.
pub(crate) const HEARTBEAT: u64 = u64::MAX;

/// What goes over a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// First frame from the connecting (local) side: which channel this
    /// connection carries (or `HEARTBEAT`), the seq the local side's
    /// messages start at, and the seq the remote side's start at (both
    /// continue across a restart).
    Hello {
        channel: u64,
        local_base: u64,
        remote_base: u64,
    },
    /// A heartbeat counter.
    Beat(u64),
    /// One message.
    Msg(Msg),
    /// The sender's log is complete: it sent seqs up to `sent`.
    End { sent: u64 },
    /// The receiver's record (cumulative); `last` on the final one.
    Ack { rec: RecordSummary, last: bool },
    /// Unload: the remote partition finishes and exits.
    Bye,
}

impl Frame {
    pub(crate) fn encode(&self) -> [u8; FRAME] {
        let f: [u64; 10] = match *self {
            Frame::Hello {
                channel,
                local_base,
                remote_base,
            } => [1, channel, local_base, remote_base, 0, 0, 0, 0, 0, 0],
            Frame::Beat(n) => [2, n, 0, 0, 0, 0, 0, 0, 0, 0],
            Frame::Msg(m) => [
                3,
                m.partition as u64,
                m.channel as u64,
                m.seq,
                m.sent_ns,
                0,
                0,
                0,
                0,
                0,
            ],
            Frame::End { sent } => [4, sent, 0, 0, 0, 0, 0, 0, 0, 0],
            Frame::Ack { rec, last } => [
                5,
                rec.accounted,
                rec.received,
                rec.dropped,
                rec.duplicates,
                rec.reordered,
                rec.misrouted,
                rec.empty_activations,
                rec.pending,
                u64::from(last),
            ],
            Frame::Bye => [6, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let mut out = [0u8; FRAME];
        for (chunk, v) in out.chunks_exact_mut(8).zip(f) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(b: &[u8; FRAME]) -> io::Result<Frame> {
        let mut f = [0u64; 10];
        for (v, chunk) in f.iter_mut().zip(b.chunks_exact(8)) {
            *v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(match f[0] {
            1 => Frame::Hello {
                channel: f[1],
                local_base: f[2],
                remote_base: f[3],
            },
            2 => Frame::Beat(f[1]),
            3 => Frame::Msg(Msg {
                partition: usize_of(f[1]),
                channel: usize_of(f[2]),
                seq: f[3],
                sent_ns: f[4],
            }),
            4 => Frame::End { sent: f[1] },
            5 => Frame::Ack {
                rec: RecordSummary {
                    accounted: f[1],
                    received: f[2],
                    dropped: f[3],
                    duplicates: f[4],
                    reordered: f[5],
                    misrouted: f[6],
                    empty_activations: f[7],
                    pending: f[8],
                },
                last: f[9] != 0,
            },
            6 => Frame::Bye,
            t => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown frame tag {t}"),
                ))
            }
        })
    }
}

/// The reading half of a connection (keeps a partial frame between calls).
pub(crate) struct FrameReader {
    stream: UnixStream,
    buf: [u8; FRAME],
    have: usize,
}

impl FrameReader {
    /// Wraps a connection, switching it to non-blocking.
    pub(crate) fn new(stream: UnixStream) -> io::Result<FrameReader> {
        stream.set_nonblocking(true)?;
        Ok(FrameReader {
            stream,
            buf: [0; FRAME],
            have: 0,
        })
    }

    /// The connection back (between frames only).
    pub(crate) fn into_inner(self) -> UnixStream {
        debug_assert_eq!(self.have, 0);
        self.stream
    }

    /// The next frame, waiting stop-aware; `Ok(None)` at end of stream. A
    /// stream ending inside a frame is `UnexpectedEof` (a torn frame: the
    /// peer died mid-write).
    pub(crate) fn next(&mut self, cx: &Context) -> io::Result<Option<Frame>> {
        self.next_with(|s| cx.wait_readable(s))
    }

    /// Like `next`, but without a stop, until `deadline` (then
    /// `WouldBlock`); `None` blocks, only for a peer known to be dead (its
    /// end is closed, so the end of the stream comes).
    pub(crate) fn next_until(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> io::Result<Option<Frame>> {
        self.next_with(|s| {
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    rustix::time::Timespec::try_from(left).ok()
                }
            };
            rustix::event::poll(
                &mut [rustix::event::PollFd::new(s, rustix::event::PollFlags::IN)],
                timeout.as_ref(),
            )
            .map(|_| ())
            .map_err(io::Error::from)
        })
    }

    fn next_with(
        &mut self,
        mut wait: impl FnMut(&UnixStream) -> io::Result<()>,
    ) -> io::Result<Option<Frame>> {
        while self.have < FRAME {
            match self.stream.read(&mut self.buf[self.have..]) {
                Ok(0) if self.have == 0 => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    ))
                }
                Ok(n) => self.have += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(&self.stream)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.have = 0;
        Frame::decode(&self.buf).map(Some)
    }
}

/// Writes one whole frame, waiting stop-aware while the socket is full. A
/// stop inside a frame leaves it torn; the writer then never writes again
/// on that connection.
pub(crate) fn write_frame(cx: &Context, stream: &UnixStream, frame: &Frame) -> io::Result<()> {
    let bytes = frame.encode();
    let mut off = 0;
    while off < FRAME {
        match (&*stream).write(&bytes[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => cx.wait_writable(stream)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let rec = RecordSummary {
            accounted: 1,
            received: 2,
            dropped: 3,
            duplicates: 4,
            reordered: 5,
            misrouted: 6,
            empty_activations: 7,
            pending: 8,
        };
        for f in [
            Frame::Hello {
                channel: HEARTBEAT,
                local_base: 5,
                remote_base: 9,
            },
            Frame::Beat(42),
            Frame::Msg(Msg {
                partition: 3,
                channel: 1,
                seq: u64::MAX,
                sent_ns: 7,
            }),
            Frame::End { sent: 10 },
            Frame::Ack { rec, last: true },
            Frame::Bye,
        ] {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        let mut bad = Frame::Bye.encode();
        bad[0] = 99;
        assert!(Frame::decode(&bad).is_err());
    }
}
