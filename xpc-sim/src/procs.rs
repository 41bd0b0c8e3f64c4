//! The local partition's side of the multi-process mode: the remote
//! partitions' processes (spawn, SIGKILL, reap) and a [`Remote`] contact per
//! live partition (its heartbeat reader and one [`Link`] per channel).

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use threadward::{Context, Thread};

use crate::channel::{Channel, ChannelReport, RecordSummary, Totals};
use crate::child::{addr, send_blocking};
use crate::config::{Config, FaultKind};
use crate::link::{Link, Plan};
use crate::wire::{Frame, FrameReader, HEARTBEAT};

/// A duration as a flag value the child parses back exactly.
fn dur(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

/// A request to the spawner thread: start partition `p`, reply with it.
type SpawnRequest = (usize, threadward::channel::Sender<std::io::Result<Child>>);

/// The remote partitions' processes.
pub(crate) struct Procs {
    /// The run's socket namespace (abstract names: nothing on disk).
    pub(crate) ns: String,
    children: Mutex<BTreeMap<usize, Child>>,
    /// Partitions killed on purpose (`--kill-partition`): their SIGKILL
    /// exit is expected.
    killed: Mutex<std::collections::BTreeSet<usize>>,
    /// Processes started, over the run.
    pub(crate) started: AtomicU64,
    /// Every process is started by one thread that outlives them all: the
    /// parent-death signal fires when the *thread* that forked a process
    /// exits, so a restart forked from a short-lived thread would die with
    /// it.
    spawner: Mutex<Option<threadward::channel::Sender<SpawnRequest>>>,
    spawner_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Procs {
    pub(crate) fn new(cfg: &Config) -> std::io::Result<Procs> {
        let exe = match &cfg.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe()?,
        };
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut args: Vec<String> = [
            ("--partitions", cfg.partitions.to_string()),
            ("--channels", cfg.channels.to_string()),
            ("--messages", cfg.messages.to_string()),
            ("--duration", dur(cfg.duration)),
            ("--callback-block", dur(cfg.callback_block)),
            ("--callback", cfg.callback.name().to_owned()),
            ("--long-block", dur(cfg.long_block)),
            ("--long-block-every", cfg.long_block_every.to_string()),
            ("--assigned-limit", cfg.assigned_limit.to_string()),
            ("--idle-limit", cfg.idle_limit.to_string()),
            ("--msg-entries", cfg.msg_entries.to_string()),
            ("--hb-interval", dur(cfg.hb_interval)),
            ("--hb-stale-after", dur(cfg.hb_stale_after)),
            ("--seed", cfg.seed.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect();
        for f in &cfg.faults {
            let kind = match f.kind {
                FaultKind::Drop => "drop",
                FaultKind::Repeat => "repeat",
                FaultKind::Reorder => "reorder",
                FaultKind::LoseJob => "lose-job",
                FaultKind::DoubleJob => "double-job",
            };
            args.extend([
                "--inject-fault".into(),
                format!("{kind}@{}.{}", f.partition, f.channel),
            ]);
        }
        let ns = format!("{}.{nonce}", std::process::id());
        let (tx, rx) = threadward::channel::unbounded::<SpawnRequest>();
        let spawner_ns = ns.clone();
        let thread = std::thread::Builder::new()
            .name("xpc-spawner".into())
            .spawn(move || {
                use std::os::unix::process::CommandExt;
                for (p, reply) in rx {
                    let child = Command::new(&exe)
                        .args(&args)
                        .args([
                            "--role-partition",
                            &p.to_string(),
                            "--rendezvous",
                            &spawner_ns,
                        ])
                        .args(["--parent-pid", &std::process::id().to_string()])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        // Its own process group: a terminal's Ctrl-C goes to
                        // the local partition, which unloads the remote
                        // ones in order (they die with it through the
                        // parent-death signal if it is killed).
                        .process_group(0)
                        .spawn();
                    let _ = reply.send(child);
                }
            })?;
        Ok(Procs {
            ns,
            children: Mutex::default(),
            killed: Mutex::default(),
            started: AtomicU64::new(0),
            spawner: Mutex::new(Some(tx)),
            spawner_thread: Mutex::new(Some(thread)),
        })
    }

    /// Ends the spawner thread (after every process was reaped).
    pub(crate) fn close(&self) {
        drop(self.spawner.lock().unwrap().take());
        if let Some(t) = self.spawner_thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// Starts partition `p`'s process.
    pub(crate) fn spawn(&self, p: usize) -> std::io::Result<()> {
        let (reply, answer) = threadward::channel::bounded(1);
        let closed = || std::io::Error::other("the spawner has ended");
        self.spawner
            .lock()
            .unwrap()
            .as_ref()
            .ok_or_else(closed)?
            .send((p, reply))
            .map_err(|_| closed())?;
        let child = answer.recv().map_err(|_| closed())??;
        self.started.fetch_add(1, Relaxed);
        self.killed.lock().unwrap().remove(&p);
        if let Some(mut old) = self.children.lock().unwrap().insert(p, child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        Ok(())
    }

    /// Whether partition `p`'s process is running (not exited, not
    /// reaped).
    pub(crate) fn alive(&self, p: usize) -> bool {
        self.children
            .lock()
            .unwrap()
            .get_mut(&p)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether partition `p`'s process was killed by a signal (it died,
    /// rather than finished).
    pub(crate) fn killed(&self, p: usize) -> bool {
        // Its connections end when the dying process closes its files, a
        // moment before it can be reaped: wait for the exit (briefly).
        let end = Instant::now() + Duration::from_secs(1);
        loop {
            let status = match self.children.lock().unwrap().get_mut(&p) {
                None => return false,
                Some(c) => c.try_wait(),
            };
            match status {
                Ok(Some(st)) => return st.code().is_none(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
                _ => return false,
            }
        }
    }

    /// SIGKILL to partition `p` (not reaped: its death is for the
    /// heartbeat checker to find). False if it is not running.
    pub(crate) fn kill(&self, p: usize) -> bool {
        self.killed.lock().unwrap().insert(p);
        self.children
            .lock()
            .unwrap()
            .get_mut(&p)
            .is_some_and(|c| c.kill().is_ok())
    }

    /// Fences partition `p`: SIGKILL and reap, so nothing it wrote can
    /// still arrive after its channels are accounted.
    pub(crate) fn kill_and_reap(&self, p: usize) {
        let child = self.children.lock().unwrap().remove(&p);
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Reaps every process by `deadline` (they exit after BYE); kills the
    /// ones still running then. Returns problems (a partition that did not
    /// exit, or exited with an error).
    pub(crate) fn reap_all(&self, deadline: Instant) -> Vec<String> {
        let mut problems = Vec::new();
        let mut children = std::mem::take(&mut *self.children.lock().unwrap());
        // A partition never contacted (unloaded before discovery reached
        // it) waits for a BYE like any other: send it one.
        for (p, c) in &mut children {
            if matches!(c.try_wait(), Ok(None)) {
                self.bye(*p, c, deadline);
            }
        }
        for (p, mut c) in children {
            loop {
                match c.try_wait() {
                    Ok(Some(st)) if st.success() => break,
                    // Killed on purpose (a kill that landed around the
                    // unload, or before discovery reached it).
                    Ok(Some(st))
                        if st.code().is_none() && self.killed.lock().unwrap().contains(&p) =>
                    {
                        break
                    }
                    Ok(Some(st)) => {
                        problems.push(format!("partition {p}'s process exited with {st}"));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    _ => {
                        problems.push(format!("partition {p}'s process did not exit; killed"));
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        problems
    }
}

impl Procs {
    /// Says BYE to partition `p` on a heartbeat connection of its own
    /// (retrying while it may still be starting, until `deadline`).
    fn bye(&self, p: usize, child: &mut Child, deadline: Instant) {
        let Ok(a) = addr(&self.ns, p) else {
            return;
        };
        let end = deadline.min(Instant::now() + Duration::from_secs(1));
        loop {
            if let Ok(s) = UnixStream::connect_addr(&a) {
                let hello = Frame::Hello {
                    channel: HEARTBEAT,
                    local_base: 0,
                    remote_base: 0,
                };
                let _ = send_blocking(&s, &hello).and_then(|()| send_blocking(&s, &Frame::Bye));
                return;
            }
            // Gone meanwhile (it was finishing already), or out of time.
            if Instant::now() >= end || !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Where a channel's seqs continue after a partition restarts: the local
/// side's next seq, and the remote side's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bases {
    pub(crate) local: u64,
    pub(crate) remote: u64,
}

/// A live remote partition, seen from the local one.
pub(crate) struct Remote {
    p: usize,
    links: Vec<Link>,
    hb: UnixStream,
    hb_reader: Option<Thread<()>>,
    /// Seq bases this incarnation started from, per opened link.
    bases: Vec<Bases>,
    /// Seq bases for every channel (the unopened ones carry over).
    planned: Vec<Bases>,
    suffix: String,
}

/// Connects to `ns`'s partition `p`, retrying while it starts (bounded by
/// `within`; stop-aware through `cx`).
fn connect(
    cx: &Context,
    ns: &str,
    p: usize,
    within: Duration,
    alive: &dyn Fn() -> bool,
) -> std::io::Result<UnixStream> {
    let a = addr(ns, p)?;
    let end = Instant::now() + within;
    loop {
        match UnixStream::connect_addr(&a) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= end || !alive() => return Err(e),
            Err(_) => cx.sleep(Duration::from_millis(2))?,
        }
    }
}

/// A failed discovery: the error, and the part that was connected (to be
/// accounted as a dead partition's).
pub(crate) type ConnectError = (std::io::Error, Option<Box<Remote>>);

impl Remote {
    /// Discovers partition `p` (incarnation `inc`: 0 first, then one per
    /// restart), opens its heartbeat and channels.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        cx: &Context,
        cfg: &Config,
        ns: &str,
        p: usize,
        inc: usize,
        bases: &[Bases],
        beat: Arc<dyn Fn() + Send + Sync>,
        totals: &Arc<Totals>,
        alive: &dyn Fn() -> bool,
    ) -> Result<Remote, ConnectError> {
        let no_part = |e: std::io::Error| (e, None);
        let hb = connect(cx, ns, p, Duration::from_secs(5), alive).map_err(no_part)?;
        send_blocking(
            &hb,
            &Frame::Hello {
                channel: HEARTBEAT,
                local_base: 0,
                remote_base: 0,
            },
        )
        .map_err(no_part)?;
        let mut r = FrameReader::new(hb.try_clone().map_err(no_part)?).map_err(no_part)?;
        let hb_reader = threadward::spawn(format!("xpc-hb-p{p}"), move |cx| {
            while let Ok(Some(f)) = r.next(cx) {
                if matches!(f, Frame::Beat(_)) {
                    beat();
                }
            }
        })
        .map_err(no_part)?;
        let suffix = if inc == 0 {
            String::new()
        } else {
            format!("r{inc}")
        };
        let mut remote = Remote {
            p,
            links: Vec::new(),
            hb,
            hb_reader: Some(hb_reader),
            bases: Vec::new(),
            planned: bases.to_vec(),
            suffix,
        };
        for (c, b) in bases.iter().enumerate() {
            if let Err(e) = remote.open(cx, cfg, ns, c, *b, totals, alive) {
                return Err((e, Some(Box::new(remote))));
            }
        }
        Ok(remote)
    }

    /// Opens channel `c` of this partition.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        cx: &Context,
        cfg: &Config,
        ns: &str,
        c: usize,
        b: Bases,
        totals: &Arc<Totals>,
        alive: &dyn Fn() -> bool,
    ) -> std::io::Result<()> {
        let p = self.p;
        let suffix = self.suffix.clone();
        {
            let s = connect(cx, ns, p, Duration::from_secs(5), alive)?;
            send_blocking(
                &s,
                &Frame::Hello {
                    channel: c as u64,
                    local_base: b.local,
                    remote_base: b.remote,
                },
            )?;
            let seed = cfg.seed ^ ((p as u64) << 32) ^ c as u64;
            let rx = Channel::open_at(p, c, b.remote, suffix.clone(), cfg, seed, totals.clone())?;
            let plan = Plan {
                partition: p,
                channel: c,
                base: b.local,
                total: cfg.messages,
                duration: cfg.duration,
                acks: false,
                fault: None,
                fault_at: 0,
            };
            self.bases.push(b);
            match Link::start(s, rx.clone(), plan) {
                Ok(l) => self.links.push(l),
                Err(e) => {
                    // Nothing went through it: account it as closed.
                    self.bases.pop();
                    rx.disconnect(Duration::from_secs(2));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Whether every message both ways has been delivered: the remote
    /// sent all and the local side delivered them; the local side sent all
    /// and the remote acknowledged them with nothing pending.
    pub(crate) fn done(&self, total: u64) -> bool {
        self.links.iter().all(|l| {
            let sh = &l.shared;
            let rec = l.rx.summary();
            let incoming = *sh.peer_end.lock().unwrap() == Some(total)
                && rec.accounted == total
                && rec.pending == 0;
            let acked = sh
                .peer_ack
                .lock()
                .unwrap()
                .is_some_and(|(a, _)| a.accounted == total && a.pending == 0);
            incoming && sh.sent.load(Relaxed) == total && acked
        })
    }

    pub(crate) fn check_stall(&self, bound: Duration) -> bool {
        let mut any = false;
        for l in &self.links {
            any |= l.rx.check_stall(bound);
        }
        any
    }

    /// Unload: END both ways, BYE, every frame read to the end, the
    /// receiving sides accounted; returns where seqs would continue.
    pub(crate) fn finish(
        mut self,
        totals: &Totals,
        deadline: Duration,
        killed: &dyn Fn() -> bool,
    ) -> (Vec<Bases>, bool) {
        for l in &self.links {
            l.finish();
            l.rx.close(Duration::from_secs(2));
        }
        let _ = send_blocking(&self.hb, &Frame::Bye);
        let end = Instant::now() + deadline;
        let mut problems = Vec::new();
        for l in &mut self.links {
            if !l.wait_ended(end) {
                problems.push(format!(
                    "{}: the partition did not finish its side by the deadline",
                    l.rx.name()
                ));
            }
        }
        // Killed before its death was declared (e.g. just before an
        // unload): it could not finish; account it as dead.
        let complete = self.links.iter().all(|l| {
            l.shared
                .peer_ack
                .lock()
                .unwrap()
                .is_some_and(|(_, last)| last)
        });
        let died = !complete && killed();
        if !died {
            totals.failures.lock().unwrap().extend(problems);
        }
        (self.account(totals, died), died)
    }

    /// The partition died (already killed and reaped by the caller): what
    /// it wrote before dying is read to the end and counted in flight.
    pub(crate) fn died(mut self, totals: &Totals) -> Vec<Bases> {
        for l in &mut self.links {
            l.rx.close(Duration::from_secs(2));
            l.peer_died();
        }
        self.account(totals, true)
    }

    fn account(mut self, totals: &Totals, died: bool) -> Vec<Bases> {
        if let Some(t) = self.hb_reader.take() {
            let _ = t.stop();
        }
        let mut next = self.planned.clone();
        for ((l, b), n) in self.links.iter().zip(&self.bases).zip(next.iter_mut()) {
            let sh = &l.shared;
            let read = b.remote.max(sh.next_seq.load(Relaxed));
            let remote_sent = sh.peer_end.lock().unwrap().unwrap_or(read);
            l.rx.set_sender_log(remote_sent);
            l.rx.report();
            let sent = sh.sent.load(Relaxed);
            let ack = *sh.peer_ack.lock().unwrap();
            totals.channels.lock().unwrap().push(outgoing(
                &l.rx.name(),
                sent,
                b.local,
                ack,
                died,
                sh.torn.load(Relaxed),
            ));
            *n = Bases {
                local: sent,
                remote: remote_sent.max(read),
            };
        }
        next
    }
}

/// The report of the local→remote direction of a channel, from the
/// remote's acknowledgements: a live partition's final one must account
/// for every message sent; a dead one's messages past its last are in
/// flight (dropped).
fn outgoing(
    name: &str,
    sent: u64,
    base: u64,
    ack: Option<(RecordSummary, bool)>,
    died: bool,
    torn: u64,
) -> ChannelReport {
    let (rec, last) = ack.unwrap_or((
        RecordSummary {
            accounted: base,
            ..RecordSummary::default()
        },
        false,
    ));
    let unacked = sent.saturating_sub(rec.accounted);
    ChannelReport {
        name: format!("{name}-out"),
        sent: sent - base.min(sent),
        received: rec.received,
        dropped_on_disconnect: rec.dropped + if died { unacked } else { 0 },
        lost: if died { 0 } else { unacked },
        duplicates: rec.duplicates,
        reordered: rec.reordered,
        misrouted: rec.misrouted,
        empty_activations: rec.empty_activations,
        stalled: (!died && !last).then(|| "no final acknowledgement from the partition".to_owned()),
        pool_mismatch: if torn > 0 && !died {
            vec![format!("{torn} torn frame(s) from a live partition")]
        } else {
            Vec::new()
        },
        ..ChannelReport::default()
    }
}
