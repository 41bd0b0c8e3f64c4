//! Adaptive places (README.md: "Adaptive places"): while jobs keep
//! blocking outside the library's waits, a managed pool runs extra places
//! for the ones blocked but not yet found. By Little's law those hold, on
//! average, (blocks found per second) × (how long a block goes unseen)
//! places; the monitor estimates both and keeps that many (rounded, at
//! most the target). The .NET thread pool raises its goal on blocking the
//! same way; here the extra decays with the block rate, so it is gone
//! ~50 ms after the last block.
//!
//! Pure arithmetic on instants the caller passes: the tests drive it with
//! a made-up clock.

use std::time::{Duration, Instant};

/// The rate's time constant: blocks found over about this long count.
pub(crate) const WINDOW: Duration = Duration::from_millis(10);
/// A found block's age counts as how long it went unseen, up to this (a
/// job that ran long before it blocked says nothing about the latency).
pub(crate) const UNSEEN_MAX: Duration = Duration::from_millis(1);

/// One pool's estimate, kept by the monitor while the pool is saturated.
#[derive(Debug, Default)]
pub(crate) struct Adapt {
    /// The last look.
    at: Option<Instant>,
    /// Blocks found since the last look.
    pending: u32,
    /// Blocks found per second (moving average over `WINDOW`).
    rate: f64,
    /// How long a block goes unseen, seconds (moving average).
    unseen: f64,
    /// The places last set on the pool.
    pub(crate) set: usize,
}

impl Adapt {
    /// The monitor found a job blocked, `age` after it started.
    pub(crate) fn found(&mut self, age: Duration) {
        self.pending += 1;
        let a = age.min(UNSEEN_MAX).as_secs_f64();
        self.unseen = if self.unseen == 0.0 {
            a
        } else {
            self.unseen + (a - self.unseen) / 8.0
        };
    }

    /// The places to keep, at a look at `now`.
    pub(crate) fn places(&mut self, now: Instant) -> usize {
        let Some(at) = self.at.replace(now) else {
            return 0; // the first look starts the clock
        };
        let dt = now.saturating_duration_since(at).as_secs_f64();
        if dt <= 0.0 {
            return self.set;
        }
        let now_rate = f64::from(std::mem::take(&mut self.pending)) / dt;
        let alpha = (dt / WINDOW.as_secs_f64()).min(1.0);
        self.rate += (now_rate - self.rate) * alpha;
        let places = (self.rate * self.unseen).round();
        // A float that is not a finite, non-negative count keeps no place.
        if places.is_finite() && places >= 0.0 {
            places as usize
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 000 blocks a second, each unseen for 200 µs: two places (Little);
    /// once blocks stop, none within 100 ms.
    #[test]
    fn places_follow_blocks_and_decay() {
        let t0 = Instant::now();
        let mut a = Adapt::default();
        let tick = Duration::from_micros(100);
        let mut now = t0;
        let mut last = 0;
        for _ in 0..1000 {
            a.found(Duration::from_micros(200)); // one per 100 µs tick
            now += tick;
            last = a.places(now);
        }
        assert_eq!(last, 2, "10 000/s x 200 us");
        for _ in 0..1000 {
            now += tick;
            last = a.places(now);
        }
        assert_eq!(last, 0, "decayed after 100 ms without blocks");
    }

    /// Old jobs that block count as unseen for `UNSEEN_MAX` at most, and a
    /// look at the same instant changes nothing.
    #[test]
    fn ages_are_capped_and_zero_intervals_are_safe() {
        let t0 = Instant::now();
        let mut a = Adapt::default();
        a.places(t0);
        a.found(Duration::MAX);
        assert_eq!(a.unseen, UNSEEN_MAX.as_secs_f64());
        a.set = 3;
        assert_eq!(a.places(t0), 3);
    }
}
