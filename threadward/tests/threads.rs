//! Managed threads through the public API.

mod common;

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{bounded, eventually, gate, task_names, HOUR, SEC};
use threadward::{registry, Builder, RecvError, Stopped, ThreadError};

#[test]
fn stop_of_an_already_exited_thread_returns_its_value() {
    bounded(10 * SEC, || {
        let t = threadward::spawn("oneshot", |_| 41 + 1).unwrap();
        t.stopper().wait().unwrap();
        assert!(t.is_finished());
        assert!(registry::lookup(t.id()).is_none());
        // The XPC discovery-thread case: stopping after it exited is safe
        // and the value is still there.
        assert!(
            t.request_stop(),
            "first request on an exited thread still wins"
        );
        assert_eq!(t.stop().unwrap(), 42);
    });
}

#[test]
fn sixteen_threads_stop_and_wait_on_one_thread_at_once() {
    bounded(20 * SEC, || {
        let t = threadward::spawn("target", |cx| {
            let _ = cx.sleep(HOUR);
            "bye"
        })
        .unwrap();
        let barrier = Arc::new(Barrier::new(16));
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let st = t.stopper();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    let won = st.request_stop();
                    st.wait().unwrap();
                    assert!(st.is_finished());
                    won
                })
            })
            .collect();
        let winners = hs.into_iter().map(|h| h.join().unwrap());
        assert_eq!(winners.filter(|w| *w).count(), 1);
        assert_eq!(t.stop().unwrap(), "bye");
    });
}

#[test]
fn stale_id_never_reaches_a_thread_that_reused_the_slot() {
    bounded(60 * SEC, || {
        let mut stale = Vec::new();
        for i in 0..3000 {
            let t = threadward::Builder::new()
                .name(format!("short-{i}"))
                .stack_size(64 * 1024)
                .spawn(|cx| cx.id())
                .unwrap();
            let id = t.id();
            assert_eq!(t.join().unwrap(), id);
            stale.push(id);
        }
        // Slots were reused (ids share slots, differ in generation).
        let mut slots: Vec<u32> = stale.iter().map(|id| id.slot()).collect();
        slots.sort_unstable();
        slots.dedup();
        assert!(slots.len() < stale.len(), "slots were never reused");
        // Hold live threads in (likely) reused slots, then resolve every stale id.
        let live: Vec<_> = (0..32)
            .map(|i| threadward::spawn(format!("live-{i}"), |cx| cx.sleep(HOUR)).unwrap())
            .collect();
        for id in &stale {
            assert!(registry::lookup(*id).is_none(), "stale {id} resolved");
        }
        let reused = live
            .iter()
            .filter(|t| stale.iter().any(|s| s.slot() == t.id().slot()))
            .count();
        assert!(reused > 0, "no live thread reused a stale slot");
        for t in &live {
            let st = registry::lookup(t.id()).expect("live thread resolves");
            assert_eq!(st.id(), t.id());
        }
        for r in threadward::stop_all(live) {
            assert_eq!(r.unwrap(), Err(Stopped));
        }
    });
}

/// Spawns a thread that signals `entered` and then blocks in `wait`; stops
/// it once it is in the wait and returns how long the stop took.
fn time_stop<T: Send + 'static>(
    name: &str,
    wait: impl FnOnce(&threadward::Context) -> T + Send + 'static,
) -> (T, Duration) {
    let t = threadward::spawn(name, wait).unwrap();
    let id = t.id();
    eventually(10 * SEC, "thread enters its wait", || {
        registry::snapshot()
            .threads
            .iter()
            .any(|i| i.id == id && matches!(i.state, registry::ThreadState::Waiting(_)))
    });
    // Give it a moment to block for real after recording its state.
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    let out = t.stop().unwrap();
    (out, start.elapsed())
}

#[test]
fn a_thread_blocked_in_each_wait_kind_stops_promptly() {
    bounded(30 * SEC, || {
        let (r, took) = time_stop("in-sleep", |cx| cx.sleep(HOUR));
        assert_eq!(r, Err(Stopped));
        assert!(took < SEC / 2, "sleep stop took {took:?}");

        let (r, took) = time_stop("in-condvar", |cx| {
            let m = Mutex::new(());
            let cv = Condvar::new();
            cx.wait_while(&cv, m.lock().unwrap(), |_| true).map(|_| ())
        });
        assert_eq!(r, Err(Stopped));
        assert!(took < SEC / 2, "condvar stop took {took:?}");

        let (tx, rx) = crossbeam_channel::unbounded::<u8>();
        let (r, took) = time_stop("in-channel", move |cx| cx.recv(&rx));
        assert_eq!(r, Err(RecvError::Stopped));
        assert!(took < SEC / 2, "channel stop took {took:?}");
        drop(tx);

        let (a, b) = UnixStream::pair().unwrap();
        let (r, took) = time_stop("in-read", move |cx| cx.wait_readable(&a));
        let e = r.unwrap_err();
        assert!(threadward::is_stopped(&e), "{e}");
        assert_ne!(e.kind(), ErrorKind::Interrupted, "std retries Interrupted");
        assert!(took < SEC / 2, "fd stop took {took:?}");
        drop(b);
    });
}

#[test]
fn every_wait_sees_a_stop_requested_before_it_began() {
    bounded(20 * SEC, || {
        let go = Arc::new(Barrier::new(2));
        let g = go.clone();
        let t = threadward::spawn("late-waiter", move |cx| {
            g.wait(); // the stop is requested before we pass this
            g.wait();
            let m = Mutex::new(());
            let cv = Condvar::new();
            let (_tx, rx) = crossbeam_channel::unbounded::<u8>();
            let (a, _b) = UnixStream::pair().unwrap();
            (
                cx.sleep(HOUR),
                cx.wait_while(&cv, m.lock().unwrap(), |_| true).map(|_| ()),
                cx.recv(&rx),
                cx.wait_readable(&a).map_err(|e| threadward::is_stopped(&e)),
                cx.wait_writable(&a).map_err(|e| threadward::is_stopped(&e)),
                cx.pause_point(),
            )
        })
        .unwrap();
        go.wait();
        t.request_stop();
        go.wait();
        let out = t.join().unwrap();
        assert_eq!(out.0, Err(Stopped));
        assert_eq!(out.1, Err(Stopped));
        assert_eq!(out.2, Err(RecvError::Stopped));
        assert_eq!(out.3, Err(true));
        assert_eq!(out.4, Err(true));
        assert_eq!(out.5, Err(Stopped));
    });
}

#[test]
fn waits_return_normally_without_a_stop() {
    bounded(20 * SEC, || {
        let (tx, rx) = crossbeam_channel::unbounded::<u8>();
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p = pair.clone();
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = threadward::spawn("normal", move |cx| {
            let slept = cx.sleep(Duration::from_millis(5));
            let got = cx.recv(&rx);
            let (m, cv) = &*p;
            let flag = cx.wait_while(cv, m.lock().unwrap(), |f| !*f).map(|g| *g);
            let readable = cx.wait_readable(&a).is_ok();
            let gone = cx.recv(&rx);
            (slept, got, flag, readable, gone)
        })
        .unwrap();
        tx.send(9).unwrap();
        *pair.0.lock().unwrap() = true;
        pair.1.notify_all();
        std::io::Write::write_all(&mut b, b"x").unwrap();
        drop(tx);
        let out = t.join().unwrap();
        assert_eq!(out.0, Ok(()));
        assert_eq!(out.1, Ok(9));
        assert_eq!(out.2, Ok(true));
        assert!(out.3);
        assert_eq!(out.4, Err(RecvError::Disconnected));
    });
}

#[test]
fn stop_all_of_1000_blocked_threads_returns_every_value() {
    bounded(60 * SEC, || {
        let threads: Vec<_> = (0..1000)
            .map(|i| {
                Builder::new()
                    .name(format!("blocked-{i}"))
                    .stack_size(64 * 1024)
                    .spawn(move |cx| {
                        let r = cx.sleep(HOUR);
                        (i, r)
                    })
                    .unwrap()
            })
            .collect();
        let stoppers: Vec<_> = threads.iter().map(|t| t.stopper()).collect();
        let out = threadward::stop_all(threads);
        assert_eq!(out.len(), 1000);
        for (i, r) in out.into_iter().enumerate() {
            assert_eq!(r.unwrap(), (i, Err(Stopped)));
        }
        assert!(stoppers.iter().all(|s| s.is_finished()));
    });
}

#[test]
fn stop_all_requests_every_stop_before_joining_any() {
    // Thread 0 only returns once thread 1 has seen its stop: if stop_all
    // joined thread 0 before requesting thread 1's stop, this would hang.
    bounded(20 * SEC, || {
        let second_saw = Arc::new(AtomicBool::new(false));
        let s = second_saw.clone();
        let first = threadward::spawn("first", move |cx| {
            let _ = cx.sleep(HOUR);
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            1
        })
        .unwrap();
        let s = second_saw.clone();
        let second = threadward::spawn("second", move |cx| {
            let _ = cx.sleep(HOUR);
            s.store(true, Ordering::SeqCst);
            2
        })
        .unwrap();
        let out: Vec<_> = threadward::stop_all([first, second])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, vec![1, 2]);
    });
}

#[test]
fn names_reach_the_os_truncated_to_15_bytes_and_stay_whole_here() {
    bounded(10 * SEC, || {
        let long = "xpc-partition-contact-042";
        let t = threadward::spawn(long, |cx| {
            let _ = cx.sleep(HOUR);
            cx.name().to_owned()
        })
        .unwrap();
        let short = threadward::spawn("hb", |cx| cx.sleep(HOUR)).unwrap();
        assert_eq!(t.name(), long);
        eventually(5 * SEC, "names visible in /proc", || {
            let names = task_names();
            names.iter().any(|n| n == "xpc-partition-c") && names.iter().any(|n| n == "hb")
        });
        let snap = registry::snapshot();
        assert!(snap.threads.iter().any(|i| &*i.name == long));
        assert_eq!(t.stop().unwrap(), long);
        short.stop().unwrap().unwrap_err();
    });
}

#[test]
fn multibyte_names_are_cut_on_a_char_boundary() {
    bounded(10 * SEC, || {
        // 14 ASCII bytes then a 3-byte char: the OS name stops before it.
        let name = "abcdefghijklmn\u{2603}-snow";
        let t = threadward::spawn(name, |cx| cx.sleep(HOUR)).unwrap();
        eventually(5 * SEC, "name visible", || {
            task_names().iter().any(|n| n == "abcdefghijklmn")
        });
        assert_eq!(t.name(), name);
        t.stop().unwrap().unwrap_err();
    });
}

#[test]
fn dropping_a_thread_stops_and_joins_it_and_detach_opts_out() {
    bounded(10 * SEC, || {
        let t = threadward::spawn("dropped", |cx| cx.sleep(HOUR)).unwrap();
        let st = t.stopper();
        drop(t);
        assert!(st.is_finished(), "drop returned before the thread finished");
        assert!(st.stop_requested());

        let t = threadward::spawn("detached", |cx| cx.sleep(HOUR)).unwrap();
        let st = t.stopper();
        t.detach();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!st.is_finished(), "detach must not stop the thread");
        assert!(!st.stop_requested());
        st.request_stop();
        st.wait().unwrap();
    });
}

#[test]
fn a_thread_stopping_or_joining_itself_gets_self_join() {
    bounded(10 * SEC, || {
        let (handle_tx, handle_rx) = crossbeam_channel::bounded::<threadward::Thread<()>>(1);
        let (out_tx, out_rx) = crossbeam_channel::bounded(1);
        let t = threadward::spawn("narcissus", move |cx| {
            let me = cx.recv(&handle_rx).unwrap();
            let waited = me.stopper().wait();
            let paused = me.stopper().pause();
            let timed = me.stopper().wait_timeout(Duration::from_secs(5));
            // Consumes the handle; its drop inside the thread must not deadlock.
            let stopped = me.stop();
            out_tx.send((waited, paused, timed, stopped)).unwrap();
        })
        .unwrap();
        let st = t.stopper();
        handle_tx.send(t).unwrap();
        let (waited, paused, timed, stopped) = out_rx.recv_timeout(5 * SEC).unwrap();
        let selfjoin = ThreadError::SelfJoin {
            name: "narcissus".into(),
        };
        assert_eq!(waited, Err(selfjoin.clone()));
        assert!(!paused);
        assert!(!timed);
        assert_eq!(stopped, Err(selfjoin.clone()));
        assert!(selfjoin.to_string().contains("narcissus"));
        st.wait().unwrap();
    });
}

#[test]
fn a_panicking_body_is_reported_with_name_and_message() {
    bounded(10 * SEC, || {
        let t = threadward::spawn("panicker", |_| -> u8 { panic!("bad state {}", 7) }).unwrap();
        let e = t.join().unwrap_err();
        assert_eq!(
            e,
            ThreadError::Panicked {
                name: "panicker".into(),
                message: "bad state 7".into()
            }
        );
        assert!(e.to_string().contains("panicker"));
        let t = threadward::spawn("panicker2", |cx| {
            let _ = cx.sleep(HOUR);
            panic!("on stop")
        })
        .unwrap();
        assert!(matches!(t.stop(), Err(ThreadError::Panicked { .. })));
    });
}

#[test]
fn pause_resume_and_stop_ends_a_pause() {
    bounded(20 * SEC, || {
        let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = rounds.clone();
        let t = threadward::spawn("parkable", move |cx| {
            while cx.pause_point().is_ok() {
                r.fetch_add(1, Ordering::SeqCst);
                std::thread::yield_now();
            }
        })
        .unwrap();
        let st = t.stopper();
        assert!(st.pause());
        assert!(st.is_paused());
        let frozen = rounds.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(rounds.load(Ordering::SeqCst), frozen, "ran while paused");
        let snap = registry::snapshot();
        let me = snap.threads.iter().find(|i| i.id == t.id()).unwrap();
        assert_eq!(me.state, registry::ThreadState::Paused);
        st.resume();
        eventually(5 * SEC, "runs again after resume", || {
            rounds.load(Ordering::SeqCst) > frozen
        });
        // Pause again, then stop: the stop must end the pause.
        assert!(st.pause());
        let start = Instant::now();
        t.stop().unwrap();
        assert!(start.elapsed() < SEC);
        // Pausing a finished thread reports that it never will pause.
        assert!(!st.pause());
    });
}

#[test]
fn join_and_stop_timeouts_give_the_handle_back() {
    bounded(10 * SEC, || {
        // It ignores its stop until the test lets it go (a std channel,
        // which does not see the stop), so the timeouts surely expire
        // whatever the machine's load (a 100 ms sleep here could end first).
        let (go, wait) = gate();
        let t = threadward::spawn("stubborn", move |cx| {
            let _ = cx.sleep(HOUR);
            wait.wait();
            5
        })
        .unwrap();
        let t = t.join_timeout(Duration::from_millis(10)).unwrap_err();
        let t = t.stop_timeout(Duration::from_millis(10)).unwrap_err();
        assert!(t.stopper().stop_requested());
        go.open();
        assert_eq!(t.join_timeout(5 * SEC).unwrap().unwrap(), 5);
    });
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing_registered() {
    bounded(10 * SEC, || {
        let e = threadward::spawn("", |_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("empty"));
        let e = threadward::spawn("nul\0byte", |_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("NUL"));
        let e = Builder::new()
            .name("huge-stack")
            .stack_size(usize::MAX)
            .spawn(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // Rounds fine but no OS can map it: the OS error comes back.
        let e = Builder::new()
            .name("absurd-stack")
            .stack_size(1 << 60)
            .spawn(|_| ())
            .unwrap_err();
        assert_ne!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(!registry::snapshot()
            .threads
            .iter()
            .any(|i| i.name.contains("stack") || i.name.contains("byte")));
        // A tiny stack is raised to the OS minimum, not refused.
        let t = Builder::new()
            .name("tiny")
            .stack_size(1)
            .spawn(|_| 3)
            .unwrap();
        assert_eq!(t.join().unwrap(), 3);
    });
}

#[test]
fn lookup_resolves_live_threads_only() {
    bounded(10 * SEC, || {
        let t = threadward::spawn("lookme", |cx| cx.sleep(HOUR)).unwrap();
        let id = t.id();
        let st = registry::lookup(id).expect("live");
        assert_eq!(st.name(), "lookme");
        assert!(st.request_stop());
        st.wait().unwrap();
        assert!(registry::lookup(id).is_none());
        assert_eq!(t.join().unwrap(), Err(Stopped));
    });
}
