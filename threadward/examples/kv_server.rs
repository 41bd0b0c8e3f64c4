//! A TCP key-value server with a pool job per connection, written the way
//! a user would: a `main` that waits on the service's stop token (no
//! polling) and exits with the signal's code, a `JobSet` holding the
//! connections (so a shutdown stops them all), and a `STATS` command that
//! prints the snapshot's summary.
//!
//! ```text
//! cargo run -p threadward --features signal --example kv_server -- 127.0.0.1:7879
//! nc 127.0.0.1 7879      # SET k v / GET k / STATS / QUIT
//! ```
//!
//! Ctrl-C stops it (exit 130); a second Ctrl-C ends it at once.
//! `tests/kv_server.rs` drives it.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threadward::{registry, Context, JobHint, JobSet, Pool, StopSource, Thread};

type Store = Arc<Mutex<HashMap<String, String>>>;

/// A running server: its listener's address, its stop, its threads.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    service: StopSource,
    acceptor: Thread<io::Result<()>>,
    pool: Arc<Pool>,
}

impl Server {
    /// Binds `addr` and accepts: each connection is a `MayBlock` job (it
    /// waits on its peer most of the time) of a pool of its own.
    pub fn start(addr: &str) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let service = StopSource::new();
        let pool = Arc::new(
            Pool::builder()
                .name("kv-conn")
                .max_threads(256)
                .build()
                .map_err(io::Error::other)?,
        );
        let store: Store = Arc::default();
        let p = pool.clone();
        let acceptor = threadward::Builder::new()
            .name("kv-acceptor")
            .stop_on(service.token())
            .spawn(move |cx| accept_loop(cx, &listener, &p, &store))?;
        Ok(Server {
            addr,
            service,
            acceptor,
            pool,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's stop (signals request it).
    pub fn stop_source(&self) -> &StopSource {
        &self.service
    }

    /// Stops the acceptor (its job set stops every connection) and the
    /// pool; what the pool's shutdown saw.
    pub fn shutdown(self) -> threadward::ShutdownReport {
        self.service.request_stop();
        if let Err(e) = self.acceptor.stop() {
            tracing::warn!(error = %e, "acceptor ended badly");
        }
        self.pool.shutdown(Duration::from_secs(2))
    }
}

fn accept_loop(cx: &Context, listener: &TcpListener, pool: &Pool, store: &Store) -> io::Result<()> {
    // Dropping the set (when this returns) cancels and stops every
    // connection still open.
    let mut conns: JobSet<io::Result<u64>> = JobSet::new();
    loop {
        let (stream, _peer) = match cx.accept(listener) {
            Ok(c) => c,
            Err(e) if threadward::is_stopped(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Reap the connections that ended, without waiting.
        while conns.finished() > 0 {
            let _ = conns.join_next();
        }
        let store = store.clone();
        if let Err(e) =
            conns.spawn_hinted(pool, JobHint::MayBlock, move |cx| serve(cx, stream, &store))
        {
            tracing::warn!(error = %e, "no job for a connection");
        }
    }
}

/// One connection: a command per line; returns the commands served.
fn serve(cx: &Context, stream: TcpStream, store: &Store) -> io::Result<u64> {
    let mut reader = BufReader::new(cx.io(stream.try_clone()?)?);
    let mut writer = cx.io(stream)?;
    let mut served = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(served);
        }
        let mut words = line.split_whitespace();
        let reply = match (words.next(), words.next(), words.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                store.lock().unwrap().insert(k.into(), v.into());
                "OK".to_owned()
            }
            (Some("GET"), Some(k), None) => store
                .lock()
                .unwrap()
                .get(k)
                .cloned()
                .unwrap_or_else(|| "(none)".into()),
            (Some("STATS"), None, None) => registry::snapshot().summary().to_string(),
            (Some("QUIT"), None, None) => return Ok(served),
            _ => "ERR try SET k v, GET k, STATS, QUIT".to_owned(),
        };
        writer.write_all(reply.trim_end().as_bytes())?;
        writer.write_all(b"\n")?;
        served += 1;
    }
}

#[allow(dead_code)] // the test includes this file for `Server`
fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7879".into());
    let server = Server::start(&addr)?;
    eprintln!("kv server on {}; Ctrl-C stops it", server.addr());
    #[cfg(feature = "signal")]
    let signals = {
        use threadward::signal::{StopOnSignals, SIGINT, SIGTERM};
        StopOnSignals::new(server.stop_source(), &[SIGINT, SIGTERM])
            .second_signal_exits()
            .install()?
    };
    server.stop_source().token().wait();
    eprintln!("{}", server.shutdown());
    #[cfg(feature = "signal")]
    if let Some(code) = signals.exit_code() {
        std::process::exit(code);
    }
    Ok(())
}
