//! Feature `signal`: a signal to the process requests the stop.
#![cfg(feature = "signal")]

use std::time::{Duration, Instant};

#[test]
fn a_signal_requests_the_stop_and_the_guard_uninstalls() {
    use signal_hook::consts::SIGUSR2;
    let source = threadward::StopSource::new();
    let guard = threadward::signal::stop_on_signals(&source, &[SIGUSR2]).unwrap();
    let t = threadward::Builder::new()
        .name("svc")
        .stop_on(source.token())
        .spawn(|cx| cx.sleep(Duration::from_secs(60)))
        .unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR2)
        .unwrap();
    let start = Instant::now();
    assert_eq!(t.join().unwrap(), Err(threadward::Stopped));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(source.stop_requested());
    drop(guard);
    // A forbidden signal is a clear error, nothing left installed.
    let err =
        threadward::signal::stop_on_signals(&source, &[SIGUSR2, signal_hook::consts::SIGKILL])
            .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// The guard says which signal came and the exit code a shell expects.
#[test]
fn the_guard_names_the_signal_and_its_exit_code() {
    use threadward::signal::{stop_on_signals, SIGUSR1};
    let source = threadward::StopSource::new();
    let guard = stop_on_signals(&source, &[SIGUSR1]).unwrap();
    assert_eq!((guard.received(), guard.exit_code()), (None, None));
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1)
        .unwrap();
    assert!(source.token().wait_timeout(Duration::from_secs(10)));
    assert_eq!(guard.received(), Some(SIGUSR1));
    assert_eq!(guard.exit_code(), Some(128 + SIGUSR1));
}

/// `second_signal_exits`: the first signal requests the stop, a second
/// ends the process with the signal's default action (the parent sees
/// the child killed by it). Runs this test binary again as the child.
#[test]
fn a_second_signal_ends_the_process() {
    use std::os::unix::process::ExitStatusExt;
    if std::env::var_os("THREADWARD_SIGNAL_CHILD").is_some() {
        let source = threadward::StopSource::new();
        let _guard =
            threadward::signal::StopOnSignals::new(&source, &[threadward::signal::SIGUSR1])
                .second_signal_exits()
                .install()
                .unwrap();
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::USR1).unwrap();
        assert!(source.token().wait_timeout(Duration::from_secs(10)));
        rustix::process::kill_process(me, rustix::process::Signal::USR1).unwrap();
        std::thread::sleep(Duration::from_secs(10));
        std::process::exit(0); // not reached: the second signal ends us
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_second_signal_ends_the_process",
            "--test-threads=1",
        ])
        .env("THREADWARD_SIGNAL_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(threadward::signal::SIGUSR1),
        "{status:?}"
    );
}

/// `snapshot_on_signal` hands the sink a snapshot per signal, from its
/// watcher thread; a panicking sink does not end the watcher.
#[test]
fn a_signal_hands_the_sink_a_snapshot() {
    use threadward::signal::{snapshot_on_signal, SIGHUP};
    let (tx, rx) = crossbeam_channel::unbounded();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let _dump = snapshot_on_signal(SIGHUP, move |snap| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tx.send(snap.summary().to_string()).unwrap();
        assert!(n > 0, "the first sink call panics (contained)");
    })
    .unwrap();
    for _ in 0..2 {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)
            .unwrap();
        let text = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(text.contains("threads:"), "{text}");
    }
}
