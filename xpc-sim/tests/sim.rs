//! The simulation in-process with small settings. The scenarios run one
//! after another inside a single test: the leak check counts this process's
//! threads, and the test harness starting another test's thread mid-run
//! would look like a leak.

use std::time::Duration;

use xpc_sim::{Callback, Config, KillAt, Report};

fn small() -> Config {
    Config {
        partitions: 4,
        channels: 2,
        messages: 400,
        duration: Duration::from_millis(600),
        callback_block: Duration::from_millis(2),
        long_block_every: 100,
        long_block: Duration::from_millis(50),
        discovery_delay: Duration::from_millis(10),
        ..Config::default()
    }
}

/// Runs `cfg` on a helper thread; a hang fails after a minute.
fn run(cfg: Config) -> Report {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(xpc_sim::run(&cfg).map_err(|e| e.to_string()));
    });
    let report = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("simulation hung")
        .expect("simulation failed");
    assert!(report.ok(), "{report}");
    assert_eq!(report.stragglers, 0, "{report}");
    report
}

fn normal_run_delivers_everything_exactly_once_and_leaks_nothing() {
    let r = run(small());
    assert_eq!(r.sent, 3 * 2 * 400);
    assert_eq!(r.delivered, r.sent);
    assert_eq!(r.dropped_on_disconnect, 0);
    assert_eq!(r.duplicates + r.out_of_order, 0);
    assert_eq!(r.leaked_threads, 0);
    assert!(r.jobs_run >= r.sent);
    assert_eq!(r.cycles[0].partitions_discovered, 3);
    let exit: Vec<_> = r.cycles[0].exit.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(exit.first(), Some(&"discovery"));
    assert_eq!(exit.last(), Some(&"reserved-page"));
}

fn killing_a_partition_disconnects_only_its_channels() {
    let mut cfg = small();
    cfg.kills = vec![KillAt {
        partition: 2,
        at: Duration::from_millis(200),
    }];
    let r = run(cfg);
    assert_eq!(r.cycles[0].partitions_died, vec![2]);
    // Partition 2 stopped sending early; the others sent everything.
    assert!(r.sent < 3 * 2 * 400, "{r}");
    assert!(r.sent >= 2 * 2 * 400, "{r}");
    assert_eq!(r.sent, r.delivered + r.dropped_on_disconnect);
}

fn unload_during_discovery_is_safe() {
    let mut cfg = small();
    cfg.partitions = 8;
    cfg.discovery_delay = Duration::from_millis(50);
    cfg.unload_at = Some(Duration::from_millis(120));
    let r = run(cfg);
    assert!(r.cycles[0].partitions_discovered < 7, "{r}");
    assert_eq!(r.leaked_threads, 0);
}

fn unload_after_discovery_exited_is_safe_and_accounts_in_flight_messages() {
    let mut cfg = small();
    cfg.duration = Duration::from_secs(5);
    cfg.callback_block = Duration::from_millis(20);
    cfg.unload_at = Some(Duration::from_millis(400));
    let r = run(cfg);
    assert_eq!(r.cycles[0].partitions_discovered, 3);
    assert!(r.sent < 3 * 2 * 400, "unloaded before the end: {r}");
    assert_eq!(r.sent, r.delivered + r.dropped_on_disconnect);
}

fn failing_notifiers_degrade_but_the_run_works() {
    let mut cfg = small();
    cfg.fail_notifiers = true;
    let r = run(cfg);
    assert_eq!(
        r.cycles[0].degraded,
        vec!["reboot-notifier", "die-notifier"]
    );
    assert_eq!(r.delivered, r.sent);
}

fn several_load_unload_cycles_do_not_grow_threads() {
    let mut cfg = small();
    cfg.cycles = 3;
    cfg.messages = 100;
    cfg.duration = Duration::from_millis(200);
    let r = run(cfg);
    assert_eq!(r.cycles.len(), 3);
    assert!(r.cycles.iter().all(|c| c.leaked_threads == 0), "{r}");
    assert_eq!(r.sent, 3 * 3 * 2 * 100);
}

/// Each callback mode proves the run; foreign blocks (not stop-aware)
/// cut by an unload are waited out: no straggler (`run` asserts it).
fn every_callback_mode_delivers_and_an_unload_waits_out_foreign_blocks() {
    for mode in [Callback::Foreign, Callback::Library, Callback::Cpu] {
        let mut cfg = small();
        cfg.callback = mode;
        if mode == Callback::Cpu {
            cfg.callback_block = Duration::from_micros(50);
            cfg.long_block = Duration::from_millis(1);
        }
        let r = run(cfg);
        assert_eq!(r.callback, mode.name());
        assert_eq!(r.delivered, r.sent, "{r}");
        assert!(r.messages_per_s > 0.0, "{r}");
    }
    let mut cfg = small();
    cfg.callback = Callback::Foreign;
    cfg.duration = Duration::from_secs(5);
    cfg.long_block_every = 5;
    cfg.long_block = Duration::from_millis(300);
    cfg.unload_at = Some(Duration::from_millis(400));
    let r = run(cfg);
    assert!(r.sent < 3 * 2 * 400, "unloaded before the end: {r}");
    assert_eq!(r.sent, r.delivered + r.dropped_on_disconnect);
}

#[test]
fn scenarios() {
    normal_run_delivers_everything_exactly_once_and_leaks_nothing();
    killing_a_partition_disconnects_only_its_channels();
    unload_during_discovery_is_safe();
    unload_after_discovery_exited_is_safe_and_accounts_in_flight_messages();
    failing_notifiers_degrade_but_the_run_works();
    several_load_unload_cycles_do_not_grow_threads();
    every_callback_mode_delivers_and_an_unload_waits_out_foreign_blocks();
}
