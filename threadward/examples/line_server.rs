//! A line server, written the way a user would first write it, and correct:
//! one managed thread per connection reading lines with stop-aware I/O,
//! the acceptor and its connections started as `Stages`, Ctrl-C (with the
//! `signal` feature) or end of stdin to shut down, and a snapshot of every
//! thread on demand.
//!
//! ```text
//! cargo run -p threadward --features signal --example line_server -- 127.0.0.1:7878
//! nc 127.0.0.1 7878      # type lines: they come back upper-cased;
//!                        # SNAPSHOT lists the threads; QUIT closes
//! ```
//!
//! Every blocking point is a library wait, so a shutdown ends a connection
//! mid-line, mid-accept, mid-write (a peer that does not read) or paused,
//! at once: `tests/line_server.rs` checks each.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threadward::{registry, Builder, Context, Stages, StopSource, Stopper, Thread};

/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// A running server.
#[derive(Debug)]
pub struct Server {
    stages: Stages,
    addr: SocketAddr,
    service: StopSource,
    conns: Arc<Mutex<Vec<Stopper>>>,
}

impl Server {
    /// Binds `addr` and starts accepting.
    pub fn start(addr: &str) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let service = StopSource::new();
        let conns: Arc<Mutex<Vec<Stopper>>> = Arc::default();
        let mut stages = Stages::new("line-server");
        let (svc, list) = (service.clone(), conns.clone());
        stages
            .thread("acceptor", Duration::from_secs(2), move || {
                Builder::new()
                    .name("acceptor")
                    .stop_on(svc.token())
                    .spawn(move |cx| accept_loop(cx, &listener, &list))
            })
            .map_err(io::Error::other)?;
        Ok(Server {
            stages,
            addr: local,
            service,
            conns,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service-wide stop (signals request it).
    pub fn stop_source(&self) -> &StopSource {
        &self.service
    }

    /// The live connections' handles (to pause or inspect them).
    pub fn connections(&self) -> Vec<Stopper> {
        let mut c = self.conns.lock().unwrap();
        c.retain(|s| !s.is_finished());
        c.clone()
    }

    /// Stops everything: the acceptor, then (through it) every connection.
    pub fn shutdown(mut self) -> threadward::StagesReport {
        self.service.request_stop();
        self.stages.shutdown(Duration::from_secs(5))
    }
}

fn accept_loop(cx: &Context, listener: &TcpListener, list: &Mutex<Vec<Stopper>>) -> io::Result<()> {
    // Dropping a `Thread` stops and joins it: when this loop ends, so do
    // the connections (they also stop with the acceptor's stop, below).
    let mut conns: Vec<Thread<io::Result<u64>>> = Vec::new();
    loop {
        let (stream, peer) = match cx.accept(listener) {
            Ok(c) => c,
            Err(e) if threadward::is_stopped(&e) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                cx.sleep(Duration::from_millis(10))?;
                continue;
            }
        };
        conns.retain(|c| !c.is_finished());
        let conn = Builder::new()
            .name(format!("conn-{}", peer.port()))
            .stop_on(cx.token().clone())
            .spawn(move |cx| serve(cx, stream));
        match conn {
            Ok(t) => {
                let mut l = list.lock().unwrap();
                l.retain(|s| !s.is_finished()); // finished connections' records go
                l.push(t.stopper());
                conns.push(t);
            }
            Err(e) => tracing::warn!(error = %e, "no thread for a connection"),
        }
    }
}

/// One connection: a line in, the reply out; returns the lines served.
fn serve(cx: &Context, stream: TcpStream) -> io::Result<u64> {
    let mut reader = BufReader::new(cx.io(stream.try_clone()?)?);
    reader.get_mut().set_timeout(Some(IDLE));
    let mut writer = cx.io(stream)?;
    let mut served = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(served); // the peer closed
        }
        let reply = match line.trim_end() {
            "QUIT" => return Ok(served),
            "SNAPSHOT" => registry::snapshot().to_string(),
            text => text.to_uppercase(),
        };
        writer.write_all(reply.as_bytes())?;
        writer.write_all(b"\n")?;
        served += 1;
        // Where a pause (Stopper::pause) parks this connection.
        cx.pause_point()?;
    }
}

#[allow(dead_code)] // the tests include this file for `Server`
fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let server = Server::start(&addr)?;
    eprintln!(
        "line server on {}; Ctrl-C or end of stdin stops it",
        server.addr()
    );
    // A first Ctrl-C stops the service; a second ends the process at once.
    #[cfg(feature = "signal")]
    let signals = {
        use threadward::signal::{StopOnSignals, SIGINT, SIGTERM};
        StopOnSignals::new(server.stop_source(), &[SIGINT, SIGTERM])
            .second_signal_exits()
            .install()?
    };
    // End of stdin also stops it (handy in scripts).
    let svc = server.stop_source().clone();
    // (Not `cx.io(stdin)`: that would leave the terminal's shared file
    // description non-blocking for the shell after we exit.)
    let _stdin = threadward::spawn("stdin", move |cx| {
        let mut sink = [0u8; 256];
        let stdin = io::stdin();
        loop {
            cx.wait_readable(&stdin)?;
            if io::Read::read(&mut stdin.lock(), &mut sink)? == 0 {
                break;
            }
        }
        svc.request_stop();
        Ok::<_, io::Error>(())
    })?;
    // `main` blocks until a signal or the end of stdin stops the service.
    server.stop_source().token().wait();
    let report = server.shutdown();
    eprintln!("{report}");
    // Exit as a shell expects after a signal: 130 for SIGINT, 143 for SIGTERM.
    #[cfg(feature = "signal")]
    if let Some(code) = signals.exit_code() {
        std::process::exit(code);
    }
    Ok(())
}
