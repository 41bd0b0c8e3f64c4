//! The async bridge example (`examples/async_bridge.rs`) under tokio: a
//! job awaited, a job cancelled by dropping its guard's future, a stop
//! token awaited; bounded so a lost wake-up fails instead of hanging.

#[path = "../examples/async_bridge.rs"]
#[allow(dead_code)]
mod async_bridge;

use std::time::Duration;

#[test]
fn async_code_awaits_jobs_and_stops() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let seen = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async_bridge::bridge()).await
        })
        .expect("bridge hung")
        .unwrap();
    assert_eq!(seen[0], "job returned 42");
    assert!(seen[1].contains("timed out and was cancelled"), "{seen:?}");
    assert_eq!(seen[2], "stop observed");
    // The cancelled job left nothing running: the shutdown found no one.
    assert_eq!(seen[3], "pool shut down with 0 stragglers");
}
