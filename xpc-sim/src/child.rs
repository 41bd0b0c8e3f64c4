//! The remote partition's side: one OS process per remote partition,
//! re-executed from the same binary (`--role-partition P`). It listens on
//! an abstract Unix-domain socket named for the run (nothing on disk to
//! leak), beats its heartbeat, and runs one [`Link`] per channel the local
//! partition opens. It dies with the local partition (parent-death
//! signal), and finishes cleanly on BYE or when the heartbeat connection
//! closes.

use std::io::{self, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{Channel, Totals};
use crate::config::{Config, FaultKind};
use crate::link::{Link, Plan};
use crate::wire::{write_frame, Frame, FrameReader, HEARTBEAT};

/// The abstract socket address of partition `p` in run `ns`.
pub(crate) fn addr(ns: &str, p: usize) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("xpc-sim.{ns}.p{p}").as_bytes())
}

/// Sends one frame on a fresh (blocking) connection.
pub(crate) fn send_blocking(s: &UnixStream, f: &Frame) -> io::Result<()> {
    (&*s).write_all(&f.encode())
}

/// Reads the first frame of a connection, waiting at most `within`.
pub(crate) fn read_hello(s: UnixStream, within: Duration) -> io::Result<(Frame, UnixStream)> {
    let mut r = FrameReader::new(s)?;
    let f = r
        .next_until(Some(Instant::now() + within))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before its hello"))?;
    let s = r.into_inner();
    Ok((f, s))
}

/// Runs remote partition `p` of run `ns` until the local partition says
/// BYE or goes away; returns the process exit code.
pub fn run_partition(cfg: &Config, p: usize, ns: &str, parent: u32) -> i32 {
    use rustix::process::{getppid, set_parent_process_death_signal, Signal};
    if let Err(e) = set_parent_process_death_signal(Some(Signal::KILL)) {
        eprintln!("xpc-sim partition {p}: cannot set the parent-death signal: {e}");
        return 3;
    }
    // The parent may have died before the signal was armed.
    if getppid().map(|pid| pid.as_raw_nonzero().get() as u32) != Some(parent) {
        return 0;
    }
    let listener = match addr(ns, p).and_then(|a| UnixListener::bind_addr(&a)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("xpc-sim partition {p}: cannot listen: {e}");
            return 3;
        }
    };
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("xpc-sim partition {p}: {e}");
        return 3;
    }
    let totals = Arc::new(Totals::new());
    // Faults are injected on the local partition's receiving side and in
    // this side's writer, never twice.
    let rx_cfg = Config {
        faults: Vec::new(),
        ..cfg.clone()
    };
    let finish = Arc::new(AtomicBool::new(false));
    let mut links: Vec<Link> = Vec::new();
    let mut beats = Vec::new();
    while !finish.load(Relaxed) {
        let (s, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let ts = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 20_000_000,
                };
                let _ = rustix::event::poll(
                    &mut [rustix::event::PollFd::new(
                        &listener,
                        rustix::event::PollFlags::IN,
                    )],
                    Some(&ts),
                );
                continue;
            }
            Err(e) => {
                eprintln!("xpc-sim partition {p}: accept: {e}");
                break;
            }
        };
        let (hello, s) = match s
            .set_nonblocking(false)
            .and_then(|()| read_hello(s, Duration::from_secs(5)))
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "a connection without a hello");
                continue;
            }
        };
        match hello {
            Frame::Hello {
                channel: HEARTBEAT, ..
            } => match heartbeat(cfg, s, &finish) {
                Ok(t) => beats.extend(t),
                Err(e) => {
                    eprintln!("xpc-sim partition {p}: heartbeat: {e}");
                    break;
                }
            },
            Frame::Hello {
                channel,
                local_base,
                remote_base,
            } => {
                let c = usize::try_from(channel).unwrap_or(usize::MAX);
                let seed = cfg.seed ^ ((p as u64) << 32) ^ channel ^ 0x5bd1_e995;
                let fault = cfg
                    .faults
                    .iter()
                    .find(|f| f.partition == p && f.channel == c)
                    .map(|f| f.kind)
                    .filter(|k| {
                        matches!(k, FaultKind::Drop | FaultKind::Repeat | FaultKind::Reorder)
                    });
                let plan = Plan {
                    partition: p,
                    channel: c,
                    base: remote_base,
                    total: cfg.messages,
                    duration: cfg.duration,
                    acks: true,
                    fault,
                    fault_at: cfg.messages / 2,
                };
                let link = Channel::open_at(
                    p,
                    c,
                    local_base,
                    String::new(),
                    &rx_cfg,
                    seed,
                    totals.clone(),
                )
                .and_then(|rx| Link::start(s, rx, plan));
                match link {
                    Ok(l) => links.push(l),
                    Err(e) => {
                        eprintln!("xpc-sim partition {p}: channel {c}: {e}");
                        break;
                    }
                }
            }
            other => tracing::warn!(partition = p, ?other, "unexpected first frame"),
        }
    }
    // Finish: END on every channel, the receiving sides closed (what is
    // queued is dropped and acknowledged as such), the final
    // acknowledgements once the local partition's frames are all read.
    // Close first: the writer's final acknowledgement must see the
    // queue's messages counted as dropped.
    for l in &links {
        l.rx.close(Duration::from_secs(2));
        l.finish();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for l in &mut links {
        l.wait_ended(deadline);
    }
    for t in beats {
        let _ = t.stop();
    }
    0
}

/// The heartbeat connection: a thread beating on it, and one reading it
/// for BYE (or its end), which sets `finish`.
fn heartbeat(
    cfg: &Config,
    s: UnixStream,
    finish: &Arc<AtomicBool>,
) -> io::Result<Vec<threadward::Thread<()>>> {
    let out = s.try_clone()?;
    out.set_nonblocking(true)?;
    let every = cfg.hb_interval;
    let beat = threadward::spawn("xpc-beat", move |cx| {
        let mut n = 0u64;
        while write_frame(cx, &out, &Frame::Beat(n)).is_ok() && cx.sleep(every).is_ok() {
            n += 1;
        }
    })?;
    let mut r = FrameReader::new(s)?;
    let fin = finish.clone();
    let watch = threadward::spawn("xpc-hb-rd", move |cx| {
        // BYE, the end of the connection, or an error: finish either way.
        while let Ok(Some(f)) = r.next(cx) {
            if f == Frame::Bye {
                break;
            }
        }
        fin.store(true, Relaxed);
    })?;
    Ok(vec![beat, watch])
}
