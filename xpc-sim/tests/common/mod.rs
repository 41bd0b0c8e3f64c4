//! Helpers for the tests that run the xpc-sim binary.
#![allow(dead_code)] // each test crate uses a different part

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_xpc-sim");

/// Small settings for runs of the binary.
pub const SMALL: &[&str] = &[
    "--partitions",
    "3",
    "--messages",
    "400",
    "--duration",
    "600ms",
    "--callback-block",
    "2ms",
    "--long-block",
    "50ms",
];

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs the binary; a hang is killed after `bound` and fails the test.
pub fn run_exe(args: &[&str], bound: Duration) -> Run {
    run_exe_pid(args, bound).0
}

pub fn json_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Waits for `child` to exit; one still running after `bound` is killed
/// and fails the test (a hang, named by `what`).
pub fn wait_exit(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung for {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Processes whose command line names `pid` as their parent partition
/// (`--parent-pid PID`): the partition processes of that run, alive or
/// zombie.
pub fn partition_processes(pid: u32) -> Vec<(u32, char)> {
    let needle = format!("--parent-pid\0{pid}\0");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{p}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|s| s.chars().next())
                .unwrap_or('?');
            found.push((p, state));
        }
    }
    found
}

/// Abstract Unix sockets of run `pid` still bound (`@xpc-sim.PID.`).
pub fn sockets_of(pid: u32) -> usize {
    let needle = format!("@xpc-sim.{pid}.");
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Runs the binary like `run_exe` and also returns its pid, so a test
/// can look for what it left behind.
pub fn run_exe_pid(args: &[&str], bound: Duration) -> (Run, u32) {
    let start = Instant::now();
    let mut child = Command::new(EXE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let status = wait_exit(&mut child, bound, &format!("xpc-sim {args:?}"));
    let run = Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took: start.elapsed(),
    };
    (run, pid)
}
