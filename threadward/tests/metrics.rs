//! Feature `metrics`: the publisher samples the pools' counts into the
//! installed `metrics` recorder (here one that keeps the last values).
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, eventually, SEC};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

type Values = Arc<Mutex<HashMap<String, f64>>>;

/// One metric's last value, under `name{label=value,...}`.
struct Cell(String, Values);

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), v as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v;
    }
    fn decrement(&self, v: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= v;
    }
    fn set(&self, v: f64) {
        self.1.lock().unwrap().insert(self.0.clone(), v);
    }
}

struct Keep(Values);

fn key_text(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Keep {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(key_text(key), self.0.clone())))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(key_text(key), self.0.clone())))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn the_publisher_samples_pool_counts_into_the_recorder() {
    bounded(30 * SEC, || {
        let values: Values = Arc::default();
        metrics::set_global_recorder(Keep(values.clone())).unwrap();
        let pool = threadward::Pool::builder().name("metered").build().unwrap();
        for _ in 0..10 {
            pool.spawn(|_| ()).unwrap();
        }
        assert!(pool.wait_idle_timeout(10 * SEC));
        let _publisher = threadward::metrics::publish(Duration::from_millis(5)).unwrap();
        let get = |k: &str| values.lock().unwrap().get(k).copied();
        eventually(10 * SEC, "the pool's counts published", || {
            get("threadward_pool_jobs_completed_total{pool=metered}") == Some(10.0)
        });
        assert_eq!(
            get("threadward_pool_jobs_submitted_total{pool=metered}"),
            Some(10.0)
        );
        assert!(get("threadward_pool_threads{pool=metered}").is_some_and(|t| t >= 1.0));
        assert!(get("threadward_threads{state=running}").is_some_and(|n| n >= 1.0));
    });
}
