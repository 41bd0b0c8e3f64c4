//! The process's thread budget: refuse a thread the kernel's mapping limit
//! cannot hold, instead of letting the process abort.
//!
//! Every thread costs about four memory mappings (its stack and guard page,
//! std's signal stack and its guard page; measured: 4.03 per thread). Linux
//! caps mappings per process at `vm.max_map_count` (65 530 by default), so
//! around 16 000 threads the next thread's signal-stack `mmap` fails inside
//! std's thread start, which aborts the process ("failed to set up
//! alternative stack guard page"). `pthread_create` itself would have said
//! EAGAIN a little later; std gives us no chance to see it.
//!
//! So threadward counts its live threads and refuses a new one with
//! `WouldBlock` (EAGAIN, what the OS says when it is out of threads) when
//! the mappings left would not hold it: pools treat that like any OS
//! refusal (the job waits for an existing worker), managed-thread spawns
//! return it. The limit is estimated once from `/proc/self/maps`, and
//! re-counted from the real mapping count whenever the estimate says no,
//! so mappings the program made meanwhile (or freed) are taken into account.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Mappings per thread (measured 4.03 with 256 KiB stacks).
const MAPS_PER_THREAD: usize = 4;
/// Mappings kept free for everything else: glibc's cache of exited
/// threads' stacks (about 350 seen), allocations, libraries loaded later.
const RESERVE: usize = 1024;

/// Threads started by this crate that have not finished their body.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Most live threads the mappings allow, as last counted (0: not yet).
static LIMIT: AtomicUsize = AtomicUsize::new(0);
/// Serialises re-counts (reading `/proc/self/maps` is ~1 ms at the limit).
static RECOUNT: Mutex<()> = Mutex::new(());

/// Counts one more thread, or refuses it with `WouldBlock`.
pub(crate) fn reserve() -> io::Result<()> {
    let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
    let mut limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 || live > limit {
        let _one = RECOUNT.lock().unwrap_or_else(|e| e.into_inner());
        limit = recount();
        LIMIT.store(limit, Ordering::Relaxed);
    }
    if live > limit {
        LIVE.fetch_sub(1, Ordering::SeqCst);
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "thread budget exhausted: {} live threads, and vm.max_map_count leaves room for no more \
                 (each thread needs ~{MAPS_PER_THREAD} memory mappings)",
                live - 1
            ),
        ));
    }
    Ok(())
}

/// Gives back a reservation whose thread never started.
pub(crate) fn release() {
    LIVE.fetch_sub(1, Ordering::SeqCst);
}

/// Held by a running thread; gives its reservation back when the thread's
/// body is done (also when it unwinds).
pub(crate) struct Held;

impl Drop for Held {
    fn drop(&mut self) {
        release();
    }
}

/// The most live threads the mappings allow now: the live ones plus what
/// the mappings left (minus the reserve) can hold. Unlimited when the
/// kernel does not say.
fn recount() -> usize {
    let Some(max) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return usize::MAX;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return usize::MAX;
    };
    let used = maps.lines().count();
    let room = max.saturating_sub(used).saturating_sub(RESERVE) / MAPS_PER_THREAD;
    // Threads counted live but not yet mapped (being created) are in
    // `LIVE` and not in `used`: a slight under-estimate, on the safe side.
    LIVE.load(Ordering::SeqCst).saturating_sub(1) + room
}

/// The number of threads the budget would admit at most right now (for
/// validating sizes such as a pool's `min_idle`).
pub(crate) fn limit() -> usize {
    let _one = RECOUNT.lock().unwrap_or_else(|e| e.into_inner());
    let limit = recount();
    LIMIT.store(limit, Ordering::Relaxed);
    limit
}
