//! Small helpers: latency summaries, medians, RSS and thread counts from
//! `/proc/self/status`, waiting with a deadline.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of a set of latency samples, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Latency {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl Latency {
    /// Summarises samples given in nanoseconds.
    pub fn from_ns(samples: &[u64]) -> Latency {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("histogram");
        for &s in samples {
            h.saturating_record(s.max(1));
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            n: samples.len(),
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            max_us: h.max() as f64 / 1000.0,
        }
    }
}

/// Median of a few repetitions (upper median for an even count).
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Reads one `kB` or count field of `/proc/self/status`.
fn status_field(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident set size of this process in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

/// Threads in this process (`Threads`).
pub fn thread_count() -> u64 {
    status_field("Threads:")
}

/// Polls `cond` (every 100 µs) until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Waits until the process has at most `n` threads (exited threads are
/// gone), up to `timeout`.
pub fn settle_threads(n: u64, timeout: Duration) {
    wait_for(timeout, || thread_count() <= n);
}

/// Formats an optional number with `prec` decimals, or `note` when absent.
pub fn fmt_opt(v: Option<f64>, prec: usize, note: &str) -> String {
    match v {
        Some(x) => format!("{x:.prec$}"),
        None => note.to_owned(),
    }
}

/// Formats a ratio `a / b` as `1.23x`, or `-` when either side is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let samples: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let l = Latency::from_ns(&samples);
        assert!((l.p50_us - 500.0).abs() < 2.0);
        assert!((l.p99_us - 990.0).abs() < 5.0);
    }

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50x");
        assert_eq!(ratio(None, Some(2.0)), "-");
        assert!(rss_kib() > 0);
        assert!(thread_count() >= 1);
    }
}
