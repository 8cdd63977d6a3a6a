//! Latency histograms and their JSON summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Microsecond latencies from 1 µs to 10 minutes, 3 significant digits.
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Self {
        Latencies(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        self.0.saturating_record(latency.as_micros().max(1) as u64);
    }

    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// p50, p99, p999 and max, in milliseconds.
    pub(crate) fn summary(&self) -> Value {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        json!({"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": self.0.max() as f64 / 1000.0})
    }
}
