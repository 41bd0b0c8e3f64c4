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
