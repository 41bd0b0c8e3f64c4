//! xpc-sim: SGI XPC's partition/channel message system rebuilt on
//! threadward, as the end-to-end proof of the library.
//!
//! One *load* of the module is a [`threadward::Stages`] group:
//!
//! | stage | threadward facility | XPC original |
//! |---|---|---|
//! | `reserved-page` | plain stage | the partition table SAL hands back on every load |
//! | `heartbeat` | long-lived managed thread | remote partitions bumping their heartbeat |
//! | `hb-checker` | long-lived managed thread | `xpc_hb_checker` declaring stale partitions dead |
//! | `reboot-notifier`, `die-notifier` | optional stages | `register_reboot_notifier`, `register_die_notifier` |
//! | `channel-registry` | plain stage (undo disconnects all) | channel teardown on `rmmod` |
//! | `discovery` | one-shot managed thread | `xpc_initiate_discovery`, exits by itself |
//!
//! Discovery opens, per remote partition, a *contact thread* (lives while
//! contact exists; it is the sender here) and `channels` channels, each with
//! a delivery [`threadward::Pool`] whose `max_threads` is XPC's
//! `assigned_limit`. Each message is one pool job that takes the channel's
//! next message in order and hands it to the user callback, which may block
//! (XPNET-like). Channels have XPC's bounded message queues; the receiving
//! end records every message, and the verdict is computed from that record
//! against each sender's log (protocol and proof: `xpc-sim/README.md`).
//!
//! With [`Mode::Processes`] (the program's default) every remote partition
//! is its own OS process ([`run_partition`]), reached over Unix-domain
//! sockets, killable with SIGKILL at any instruction and restartable; the
//! stages then include `partition-procs` and `partition-ctl` instead of the
//! simulated `heartbeat`.

mod channel;
mod child;
mod config;
mod link;
mod procs;
mod report;
mod sim;
mod wire;

pub use channel::ChannelReport;
pub use child::run_partition;
pub use config::{
    parse_duration, thread_limit, Callback, Config, Fault, FaultKind, KillAt, Mode,
    FOREIGN_BLOCK_MAX, MAX_DURATION,
};
pub use report::Report;
pub use sim::run;
