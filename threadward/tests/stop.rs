//! Stop tokens through the public API. Several behaviours are ported from
//! the C++ `std::stop_token`/`std::jthread` test suites (libc++
//! `thread.stoptoken`): a callback runs exactly once under concurrent stops,
//! deregistering a running callback waits for it, a callback may deregister
//! itself.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::{bounded, SEC};
use threadward::{StopCallback, StopSource};

#[test]
fn request_stop_is_true_only_for_the_winner() {
    let source = StopSource::new();
    let wins = bounded(10 * SEC, move || {
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = source.clone();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    s.request_stop()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count()
    });
    assert_eq!(wins, 1);
}

#[test]
fn callback_runs_exactly_once_under_concurrent_stops() {
    // libc++ stop_callback tests: many racing request_stop calls run each
    // registered callback once.
    bounded(20 * SEC, || {
        for _ in 0..200 {
            let source = StopSource::new();
            let runs = Arc::new(AtomicUsize::new(0));
            let guards: Vec<StopCallback> = (0..4)
                .map(|_| {
                    let r = runs.clone();
                    source.token().on_stop(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            let barrier = Arc::new(Barrier::new(4));
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let s = source.clone();
                    let b = barrier.clone();
                    std::thread::spawn(move || {
                        b.wait();
                        s.request_stop();
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(runs.load(Ordering::SeqCst), 4);
            drop(guards);
        }
    });
}

#[test]
fn on_stop_after_stop_runs_immediately_on_caller() {
    let source = StopSource::new();
    source.request_stop();
    let me = std::thread::current().id();
    let ran_on = Arc::new(Mutex::new(None));
    let r = ran_on.clone();
    let _g = source.token().on_stop(move || {
        *r.lock().unwrap() = Some(std::thread::current().id());
    });
    assert_eq!(*ran_on.lock().unwrap(), Some(me));
}

#[test]
fn dropped_callback_never_runs() {
    let source = StopSource::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let g = source.token().on_stop(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    drop(g);
    source.request_stop();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn dropping_guard_waits_for_callback_running_elsewhere() {
    // libc++: "stop_callback destructor blocks until the callback that is
    // executing on another thread returns".
    bounded(10 * SEC, || {
        let source = StopSource::new();
        let entered = Arc::new(Barrier::new(2));
        let finished = Arc::new(AtomicUsize::new(0));
        let (e, f) = (entered.clone(), finished.clone());
        let guard = source.token().on_stop(move || {
            e.wait();
            std::thread::sleep(Duration::from_millis(50));
            f.store(1, Ordering::SeqCst);
        });
        let s = source.clone();
        let stopper = std::thread::spawn(move || s.request_stop());
        entered.wait(); // the callback is now running on `stopper`
        drop(guard);
        assert_eq!(finished.load(Ordering::SeqCst), 1, "drop returned early");
        assert!(stopper.join().unwrap());
    });
}

#[test]
fn callback_dropping_its_own_guard_does_not_deadlock() {
    bounded(10 * SEC, || {
        let source = StopSource::new();
        let slot: Arc<Mutex<Option<StopCallback>>> = Arc::new(Mutex::new(None));
        let s = slot.clone();
        let g = source.token().on_stop(move || {
            let own = s.lock().unwrap().take();
            drop(own);
        });
        *slot.lock().unwrap() = Some(g);
        assert!(source.request_stop());
        assert!(slot.lock().unwrap().is_none());
    });
}

#[test]
fn panicking_callback_does_not_skip_the_others() {
    let source = StopSource::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let _a = source.token().on_stop(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let _b = source.token().on_stop(|| panic!("callback panic"));
    let r = runs.clone();
    let _c = source.token().on_stop(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    // Contained: the stopper returns normally (issue 10, item 6).
    assert!(source.request_stop());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(source.stop_requested());
}

/// `StopToken::wait` and `wait_timeout`: at once when already stopped,
/// woken by a stop from another thread (no polling: well inside the
/// bound), a timeout that passes says `false`, `Duration::MAX` waits, and
/// a child's token wakes on the parent's stop.
#[test]
fn token_wait_wakes_on_stop_and_times_out() {
    use std::time::{Duration, Instant};
    let source = StopSource::new();
    let token = source.token();
    let start = Instant::now();
    assert!(!token.wait_timeout(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(!token.wait_timeout(Duration::ZERO));
    let child = token.child().token();
    let s = source.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        s.request_stop();
    });
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        assert!(child.wait_timeout(Duration::MAX));
        t.elapsed()
    });
    token.wait();
    assert!(token.stop_requested());
    let waited = waiter.join().unwrap();
    assert!(waited < Duration::from_secs(10), "woken late: {waited:?}");
    stopper.join().unwrap();
    // Already stopped: at once, both forms.
    token.wait();
    assert!(token.wait_timeout(Duration::ZERO));
}
