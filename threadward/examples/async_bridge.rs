//! Async code awaiting threadward: a pool `Job` is a future of its result,
//! a `JobGuard` cancels its job when the future is dropped (a `select!`
//! that lost, a timeout), and `StopToken::stopped()` completes on a stop.
//! No runtime dependency in the library: the wakers are plain `Waker`s,
//! here tokio's.
//!
//! ```text
//! cargo run -p threadward --example async_bridge
//! ```

use std::time::Duration;

use threadward::{Pool, StopSource};

/// Runs the bridge; returns what it saw (the test checks it).
pub async fn bridge() -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let mut seen = Vec::new();
    let pool = Pool::builder().name("blocking").build()?;

    // 1. Await a blocking job's result.
    let job = pool.spawn(|cx| {
        cx.sleep(Duration::from_millis(10))?;
        Ok::<_, threadward::Stopped>(6 * 7)
    })?;
    let v = job.await??;
    seen.push(format!("job returned {v}"));

    // 2. A job raced against a timeout: the losing future is dropped, and
    //    its guard cancels (stops) the job.
    let slow = pool
        .spawn(|cx| cx.sleep(Duration::from_secs(60)))?
        .cancel_on_drop();
    let id = slow.id();
    match tokio::time::timeout(Duration::from_millis(20), slow).await {
        Ok(_) => seen.push("slow job finished?".into()),
        Err(_) => seen.push(format!("job {id} timed out and was cancelled")),
    }

    // 3. A stop token awaited from async code, requested by a thread.
    let service = StopSource::new();
    let token = service.token();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        service.request_stop();
    });
    token.stopped().await;
    stopper.join().expect("stopper thread");
    seen.push("stop observed".into());

    let report = pool.shutdown(Duration::from_secs(5));
    seen.push(format!(
        "pool shut down with {} stragglers",
        report.stragglers.len()
    ));
    Ok(seen)
}

#[allow(dead_code)] // the tests include this file for `bridge`
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for line in bridge().await? {
        println!("{line}");
    }
    Ok(())
}
