//! The xpc-sim binary as a user runs it: flags, exit codes, signals, the
//! injected faults the verdict must catch, bounded queues, and the README's
//! sample output. (Separate from `sim.rs`, whose leak checks count this
//! process's threads.)

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xpc_sim::Config;

mod common;
use common::{json_report, run_exe, Run, EXE, SMALL};

#[test]
fn bad_flags_are_a_clear_error_with_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--partitions", "1"], "at least 2"),
        (&["--kill-partition", "nonsense"], "P@TIME"),
        (&["--kill-partition", "9@100ms"], "partitions are 1..7"),
        (&["--kill-partition", "2@100"], "needs a unit"),
        (&["--no-such-flag"], "unexpected argument"),
        (&["--cycles", "0"], "at least 1"),
        (&["--duration", "1e300"], "unknown unit"),
        (&["--duration", "10"], "needs a unit"),
        (&["--duration", "-5s"], "negative"),
        (&["--duration", "0s"], "more than 0s"),
        (&["--unload-at", "9999h"], "longer than"),
        (&["--channels", "-1"], "negative"),
        (&["--messages", "-3"], "negative"),
        (&["--partitions", "99999999999"], "needs ~"),
        (&["--channels", "20000"], "the limit here is"),
        (
            &["--partitions", "999999999999999999999999"],
            "not a whole number",
        ),
        (&["--msg-entries", "0"], "at least 1"),
        (&["--assigned-limit", "0"], "at least 1"),
        (&["--hb-interval", "200ms"], "at least 3 x --hb-interval"),
        (&["--hb-interval", "1us"], "at least 1ms"),
        (&["--assigned-limit", "99999999999"], "over the pool limit"),
        (
            &["--json", "/no/such/dir/report.json"],
            "--json /no/such/dir",
        ),
        (&["--top"], "needs stdout to be a terminal"),
        (&["--inject-fault", "drop@9.0"], "no channel 9.0"),
        (
            &["--callback", "sleepy"],
            "expected foreign, library or cpu",
        ),
    ];
    for (args, why) in cases {
        let r = run_exe(args, Duration::from_secs(20));
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(why),
            "{args:?} should say {why:?}: {}",
            r.stderr
        );
        // Refused before anything started: no banner, no report.
        assert!(
            !r.stderr.contains("xpc-sim: "),
            "{args:?} started: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
}

#[test]
fn help_names_the_xpc_knobs_with_their_defaults() {
    let r = run_exe(&["--help"], Duration::from_secs(20));
    assert_eq!(r.code, Some(0));
    let d = Config::default();
    for (flag, default) in [
        ("--assigned-limit", d.assigned_limit.to_string()),
        ("--idle-limit", d.idle_limit.to_string()),
        ("--msg-entries", d.msg_entries.to_string()),
        ("--hb-interval", format!("{}ms", d.hb_interval.as_millis())),
        (
            "--hb-stale-after",
            format!("{}ms", d.hb_stale_after.as_millis()),
        ),
        ("--duration", format!("{}s", d.duration.as_secs())),
        ("--partitions", d.partitions.to_string()),
    ] {
        let at = r
            .stdout
            .find(flag)
            .unwrap_or_else(|| panic!("{flag} missing"));
        let text = &r.stdout[at..];
        let block = &text[..text[2..].find("\n  -").map_or(text.len(), |e| e + 2)];
        assert!(
            block.contains(&format!("[default: {default}]")),
            "{flag} should show the library default {default}: {block}"
        );
    }
    assert!(
        !r.stdout.contains("inject-fault"),
        "debug flags stay hidden"
    );
}

/// The proof can fail: each injected channel fault makes the run exit 1
/// naming the channel, within a bounded drain (never a hang).
#[test]
fn injected_faults_fail_the_verdict_naming_the_channel() {
    let kinds = [
        ("drop", "p2c1: 1 lost"),
        ("repeat", "p2c1: 1 duplicated"),
        ("reorder", "p2c1: 1 reordered"),
        ("lose-job", "p2c1: stalled"),
        ("double-job", "p2c1: 1 delivery jobs found nothing"),
    ];
    let runs: Vec<_> = kinds
        .iter()
        .map(|(kind, _)| {
            let fault = format!("{kind}@2.1");
            std::thread::spawn(move || {
                let mut args = SMALL.to_vec();
                args.extend(["--inject-fault", &fault]);
                run_exe(&args, Duration::from_secs(50))
            })
        })
        .collect();
    for ((kind, says), run) in kinds.iter().zip(runs) {
        let r = run.join().unwrap();
        assert_eq!(r.code, Some(1), "{kind}: {}{}", r.stdout, r.stderr);
        let verdict = r.stdout.lines().find(|l| l.contains("verdict")).unwrap();
        assert!(
            verdict.contains("FAILED") && verdict.contains(says),
            "{kind}: {verdict}"
        );
        // Only the faulty channel is blamed.
        for other in ["p1c0", "p1c1", "p2c0"] {
            assert!(!verdict.contains(other), "{kind}: {verdict}");
        }
    }
}

/// Bounded queues: a sender far ahead of its receivers waits for entries,
/// so memory and unload time do not depend on --messages (this took 9.5 s
/// and 4.3 GB before the queues were bounded).
#[test]
fn unload_and_partition_death_are_bounded_whatever_messages_says() {
    let dir = std::env::temp_dir().join(format!("xpc-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bounded.json");
    let r = run_exe(
        &[
            "--messages",
            "3000000",
            "--duration",
            "1s",
            "--unload-at",
            "1500ms",
            "--kill-partition",
            "3@500ms",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let j = json_report(&json);
    assert!(j["peak_entries"].as_u64().unwrap() <= j["msg_entries"].as_u64().unwrap());
    assert_eq!(
        j["peak_entries"], 128,
        "the senders did fill their queues: {j}"
    );
    assert!(j["peak_rss_mib"].as_u64().unwrap() < 200, "{j}");
    assert_eq!(j["callback"], "foreign", "the default: {j}");
    assert!(j["messages_per_s"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(j["cycles"][0]["partitions_died"], serde_json::json!([3]));
    let unload_us = j["cycles"][0]["unload_micros"].as_u64().unwrap();
    assert!(unload_us < 5_000_000, "unload took {unload_us} us");
    assert!(r.took < Duration::from_secs(15), "run took {:?}", r.took);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_report_write_failure_is_exit_3_not_a_failed_proof() {
    let mut args = SMALL.to_vec();
    args.extend(["--json", "/dev/full"]);
    let r = run_exe(&args, Duration::from_secs(30));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("cannot write /dev/full"), "{}", r.stderr);
    assert!(r.stdout.contains("verdict    OK"), "{}", r.stdout);
}

#[test]
fn unload_at_zero_is_explained() {
    let r = run_exe(&["--unload-at", "0s"], Duration::from_secs(20));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("nothing was tested"), "{}", r.stdout);
}

#[test]
fn no_progress_drawing_when_stderr_is_not_a_terminal() {
    let r = run_exe(SMALL, Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains('\x1b'),
        "{:?}",
        r.stderr
    );
    assert!(!r.stdout.contains('\x1b'), "{:?}", r.stdout);
}

/// Starts the binary, waits for its banner, then signals it.
fn signalled(extra: &[&str], signals: &[(rustix::process::Signal, Duration)]) -> Run {
    let mut args = vec![
        "--partitions",
        "4",
        "--duration",
        "30s",
        "--messages",
        "100000",
    ];
    args.extend(extra);
    let mut child = Command::new(EXE)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut err, &mut banner).unwrap();
    assert!(banner.starts_with("xpc-sim: "), "{banner}");
    for (sig, after) in signals {
        std::thread::sleep(*after);
        rustix::process::kill_process(pid, *sig).unwrap();
    }
    let signalled_at = Instant::now();
    let status = common::wait_exit(
        &mut child,
        Duration::from_secs(20),
        &format!("xpc-sim after {signals:?}"),
    );
    let took = signalled_at.elapsed();
    // Every partition process was unloaded with the module (or, after a
    // second signal, dies with the local partition).
    let gone = Instant::now();
    while common::partition_processes(child.id())
        .iter()
        .any(|(_, state)| *state != 'Z')
    {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "partition processes left"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    Run {
        code: status.code(),
        stdout,
        stderr,
        took,
    }
}

#[test]
fn sigint_and_sigterm_unload_cleanly_and_report() {
    use rustix::process::Signal;
    for (sig, code) in [(Signal::INT, 130), (Signal::TERM, 143)] {
        let r = signalled(&[], &[(sig, Duration::from_millis(400))]);
        assert_eq!(r.code, Some(code), "{sig:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("(interrupted)"), "{}", r.stdout);
        assert!(r.stdout.contains("verdict    OK"), "{}", r.stdout);
        assert!(r.stdout.contains("leaked threads 0"), "{}", r.stdout);
        // Every stage undone, in reverse order of start.
        let exit = r
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("exit "))
            .unwrap();
        let order: Vec<&str> = exit
            .split(", ")
            .map(|s| {
                s.trim_start()
                    .trim_start_matches("exit")
                    .trim()
                    .split(' ')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            order,
            [
                "discovery",
                "channel-registry",
                "die-notifier",
                "reboot-notifier",
                "hb-checker",
                "partition-ctl",
                "partition-procs",
                "reserved-page"
            ]
        );
        assert!(exit.matches("(undone)").count() == 8, "{exit}");
        assert!(r.took < Duration::from_secs(5), "unload took {:?}", r.took);
    }
}

#[test]
fn a_second_sigint_exits_at_once() {
    use rustix::process::Signal;
    // The first SIGINT starts an unload that takes 10 s; the second ends
    // the process at once, without a report.
    let r = signalled(
        &["--debug-slow-unload", "10s"],
        &[
            (Signal::INT, Duration::from_millis(300)),
            (Signal::INT, Duration::from_millis(300)),
        ],
    );
    assert_eq!(r.code, Some(130), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    assert!(!r.stdout.contains("xpc-sim report"), "{}", r.stdout);
}

/// The README's sample output has the shape of what a run prints: the
/// same lines with the same labels, and the same verdict.
#[test]
fn readme_sample_output_is_what_a_run_prints() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```text\nxpc-sim report")
        .expect("README has a sample report");
    let sample = &readme[start + 8..];
    let sample = &sample[..sample.find("```").unwrap()];
    let r = run_exe(SMALL, Duration::from_secs(30));
    let shape = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| {
                let l = l.trim_start();
                if l.starts_with("verdict") {
                    return l.to_owned();
                }
                // The words before the first number.
                l.split(|c: char| c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .trim()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        shape(sample.trim_end()),
        shape(r.stdout.trim_end()),
        "README:\n{sample}\nrun:\n{}",
        r.stdout
    );
}

#[test]
fn nothing_sent_is_explained_not_called_a_proof() {
    let r = run_exe(
        &["--partitions", "3", "--messages", "0"],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("nothing was tested"), "{}", r.stdout);
}

/// `xpc-sim | head -1`: the report cannot be written; that is exit 3 with
/// a message, not a panic (exit 101).
#[test]
fn a_closed_stdout_is_exit_3_not_a_panic() {
    let mut args = SMALL.to_vec();
    args.extend(["--unload-at", "100ms"]);
    let mut child = Command::new(EXE)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = common::wait_exit(
        &mut child,
        Duration::from_secs(30),
        "xpc-sim with a closed stdout",
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("cannot write the report"), "{err}");
}

/// The workspace README's example is the crate README's, which runs as a
/// doctest of the packaged crate (the workspace README is not packaged).
#[test]
fn the_workspace_readme_example_is_the_tested_one() {
    let first_rust_block = |path: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("```rust\n").expect("a rust example") + 8;
        text[start..start + text[start..].find("```").unwrap()].to_owned()
    };
    let root = first_rust_block(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let krate = first_rust_block(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../threadward/README.md"
    ));
    assert_eq!(root, krate);
}

/// `--callback` reaches the partition processes, and the report names the
/// mode and the rate.
#[test]
fn the_callback_mode_is_run_and_reported() {
    let mut args = SMALL.to_vec();
    for (flag, value) in [("--callback-block", "50us"), ("--long-block", "1ms")] {
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
    }
    args.extend(["--callback", "cpu"]);
    let r = run_exe(&args, Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let head = r
        .stdout
        .lines()
        .find(|l| l.starts_with("xpc-sim report"))
        .unwrap();
    assert!(
        head.contains("cpu callbacks") && head.contains("messages/s"),
        "{head}"
    );
}
