//! Scenarios 1 and 2: the hand-off floor (ping-pong between two threads)
//! and submit → first-instruction latency on idle, warmed pools.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};

use crate::systems::{Exec, Kind};

/// Pause between samples so the target thread is parked (idle) each time.
pub const GAP: Duration = Duration::from_micros(75);

/// A ping-pong floor variant.
#[derive(Debug, Clone, Copy)]
pub enum PingPong {
    /// `thread::park` / `Thread::unpark` with an atomic flag.
    Park,
    /// `Mutex<u32>` + two `Condvar`s.
    Condvar,
}

impl PingPong {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            PingPong::Park => "floor: std park/unpark (ping-pong / 2)",
            PingPong::Condvar => "floor: std Mutex+Condvar (ping-pong / 2)",
        }
    }

    /// A short label for charts.
    pub fn short(self) -> &'static str {
        match self {
            PingPong::Park => "park",
            PingPong::Condvar => "condvar",
        }
    }
}

/// A running ping-pong partner thread; `round` measures one round trip.
pub struct Partner {
    kind: PingPong,
    state: Arc<(Mutex<u32>, Condvar, Condvar, AtomicU32)>,
    handle: Option<thread::JoinHandle<()>>,
}

const IDLE: u32 = 0;
const PING: u32 = 1;
const PONG: u32 = 2;
const QUIT: u32 = 3;

impl Partner {
    /// Starts the partner thread.
    pub fn start(kind: PingPong) -> Partner {
        let state = Arc::new((
            Mutex::new(IDLE),
            Condvar::new(),
            Condvar::new(),
            AtomicU32::new(IDLE),
        ));
        let s = state.clone();
        let me = thread::current();
        let handle = thread::spawn(move || match kind {
            PingPong::Park => loop {
                let v = s.3.load(Ordering::Acquire);
                if v == QUIT {
                    return;
                }
                if v == PING {
                    s.3.store(PONG, Ordering::Release);
                    me.unpark();
                } else {
                    thread::park();
                }
            },
            PingPong::Condvar => {
                let mut g = s.0.lock().unwrap();
                loop {
                    while *g != PING && *g != QUIT {
                        g = s.1.wait(g).unwrap();
                    }
                    if *g == QUIT {
                        return;
                    }
                    *g = PONG;
                    drop(g);
                    s.2.notify_one();
                    g = s.0.lock().unwrap();
                }
            }
        });
        Partner {
            kind,
            state,
            handle: Some(handle),
        }
    }

    /// One round trip from the thread that started the partner; returns
    /// half of it in nanoseconds.
    pub fn round(&self) -> u64 {
        let s = &self.state;
        let t0 = Instant::now();
        match self.kind {
            PingPong::Park => {
                s.3.store(PING, Ordering::Release);
                self.handle.as_ref().unwrap().thread().unpark();
                while s.3.load(Ordering::Acquire) != PONG {
                    thread::park();
                }
            }
            PingPong::Condvar => {
                *s.0.lock().unwrap() = PING;
                s.1.notify_one();
                let mut g = s.0.lock().unwrap();
                while *g != PONG {
                    g = s.2.wait(g).unwrap();
                }
            }
        }
        let half = t0.elapsed().as_nanos() as u64 / 2;
        if let PingPong::Park = self.kind {
            s.3.store(IDLE, Ordering::Release);
        }
        half
    }
}

impl Drop for Partner {
    fn drop(&mut self) {
        *self.state.0.lock().unwrap() = QUIT;
        self.state.3.store(QUIT, Ordering::Release);
        self.state.1.notify_one();
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// One submit → start sample in nanoseconds: the clock starts right before
/// `submit`, the job reads it first thing.
pub fn dispatch_sample(
    exec: &dyn Exec,
    tx: &Sender<Instant>,
    rx: &crossbeam_channel::Receiver<Instant>,
) -> u64 {
    let tx = tx.clone();
    let job = Box::new(move || {
        let started = Instant::now();
        let _ = tx.send(started);
    });
    let t0 = Instant::now();
    exec.submit(job);
    let started = rx.recv().expect("job ran");
    exec.reap();
    started.saturating_duration_since(t0).as_nanos() as u64
}

/// What the dispatch scenario measures: a floor variant or a system.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    /// A ping-pong floor.
    Floor(PingPong),
    /// A system through [`Exec`].
    System(Kind),
}

impl Subject {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Floor(p) => p.name(),
            Subject::System(k) => k.name(),
        }
    }

    /// A short label for charts.
    pub fn short(self) -> &'static str {
        match self {
            Subject::Floor(p) => p.short(),
            Subject::System(k) => k.short(),
        }
    }
}

/// Measures every subject, `samples` each, interleaved in `rounds` so
/// drift on the machine hits all alike. Calls `tick` after each round.
pub fn measure(
    subjects: &[Subject],
    samples: usize,
    rounds: usize,
    mut tick: impl FnMut(),
) -> Vec<Vec<u64>> {
    let (tx, rx) = bounded::<Instant>(1);
    enum Live {
        Floor(Partner),
        Exec(Box<dyn Exec>),
    }
    let live: Vec<Live> = subjects
        .iter()
        .map(|s| match *s {
            Subject::Floor(p) => Live::Floor(Partner::start(p)),
            Subject::System(k) => Live::Exec(k.build(4)),
        })
        .collect();
    // Warm up: create lazily started threads, fault in stacks and code.
    for l in &live {
        for _ in 0..50 {
            match l {
                Live::Floor(p) => drop(p.round()),
                Live::Exec(e) => drop(dispatch_sample(e.as_ref(), &tx, &rx)),
            }
            thread::sleep(GAP);
        }
    }
    let mut out = vec![Vec::with_capacity(samples); subjects.len()];
    let per_round = samples.div_ceil(rounds);
    for _ in 0..rounds {
        for (i, l) in live.iter().enumerate() {
            for _ in 0..per_round {
                thread::sleep(GAP);
                out[i].push(match l {
                    Live::Floor(p) => p.round(),
                    Live::Exec(e) => dispatch_sample(e.as_ref(), &tx, &rx),
                });
            }
        }
        tick();
    }
    for l in live {
        if let Live::Exec(e) = l {
            e.shutdown();
        }
    }
    out
}
