//! The key-value server example: a job per connection, commands served,
//! STATS shows the summary, and a shutdown ends every open connection
//! (each client sees EOF) within a bound.

#[path = "../examples/kv_server.rs"]
mod kv_server;

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{bounded, SEC};

fn ask(conn: &mut BufReader<TcpStream>, cmd: &str) -> String {
    conn.get_mut()
        .write_all(format!("{cmd}\n").as_bytes())
        .unwrap();
    let mut first = String::new();
    conn.read_line(&mut first).unwrap();
    first.trim_end().to_owned()
}

#[test]
fn connections_are_served_and_a_shutdown_ends_them_all() {
    bounded(60 * SEC, || {
        let server = kv_server::Server::start("127.0.0.1:0").unwrap();
        let connect = || {
            let s = TcpStream::connect(server.addr()).unwrap();
            s.set_read_timeout(Some(10 * SEC)).unwrap();
            BufReader::new(s)
        };
        let mut a = connect();
        let mut b = connect();
        assert_eq!(ask(&mut a, "SET k v1"), "OK");
        assert_eq!(ask(&mut b, "GET k"), "v1");
        assert_eq!(ask(&mut b, "GET nope"), "(none)");
        assert!(ask(&mut a, "STATS").starts_with("threads: "));
        // 20 idle connections, then a shutdown: every one sees EOF.
        let mut idle: Vec<_> = (0..20).map(|_| connect()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let report = server.shutdown();
        assert!(
            start.elapsed() < 5 * SEC,
            "shutdown took {:?}",
            start.elapsed()
        );
        assert!(report.stragglers.is_empty(), "{report}");
        for c in idle.iter_mut().chain([&mut a, &mut b]) {
            let mut rest = Vec::new();
            // EOF or a reset: the connection is closed either way. A read
            // timeout (10 s) means the server left it open.
            match c.read_to_end(&mut rest) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("a connection was left open: {e}"),
            }
        }
    });
}
