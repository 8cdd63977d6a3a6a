//! A latency histogram for the metrics page: fixed buckets of atomic
//! counts, so recording is a few relaxed adds on any thread, and a bounded
//! family of them by label.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 100 µs (an fsync on a fast
/// disk) to 10 s (a commit timeout).
pub const BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Counts of observations at or below each bound, plus their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one past every
    /// bound.
    buckets: [AtomicU64; BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram as the text format shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, cumulative.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BUCKETS_SECONDS.len());
        for (bound, observed) in BUCKETS_SECONDS.iter().zip(&self.buckets) {
            count += observed.load(Ordering::Relaxed);
            buckets.push((*bound, count));
        }
        count += self.buckets[BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Histograms by label, at most `FAMILY_MAX` of them: observations past
/// that go to the `overflow` label, so labels a client chooses (a method
/// name) cannot grow the map without bound.
#[derive(Debug)]
pub struct Family<K> {
    histograms: Mutex<BTreeMap<K, Histogram>>,
    overflow: K,
}

pub const FAMILY_MAX: usize = 256;

impl<K: Ord + Clone> Family<K> {
    pub fn new(overflow: K) -> Self {
        Family {
            histograms: Mutex::new(BTreeMap::new()),
            overflow,
        }
    }

    pub fn observe(&self, label: K, took: Duration) {
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let label = match histograms.len() < FAMILY_MAX || histograms.contains_key(&label) {
            true => label,
            false => self.overflow.clone(),
        };
        histograms.entry(label).or_default().observe(took);
    }

    pub fn snapshot(&self) -> Vec<(K, HistogramSnapshot)> {
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        histograms
            .iter()
            .map(|(label, histogram)| (label.clone(), histogram.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets_and_the_sum() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(80));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(30));
        let seen = histogram.snapshot();
        assert_eq!(seen.count, 3);
        assert_eq!(seen.buckets[0], (0.0001, 1));
        let at = |bound: f64| {
            seen.buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, n)| *n)
        };
        assert_eq!(at(0.0025), Some(1));
        assert_eq!(at(0.005), Some(2));
        assert_eq!(at(10.0), Some(2), "30 s is past every bound");
        assert!((seen.sum_seconds - 30.00308).abs() < 1e-9);
    }

    #[test]
    fn a_family_past_its_bound_records_under_the_overflow_label() {
        let family = Family::new(u64::MAX);
        for label in 0..FAMILY_MAX as u64 + 10 {
            family.observe(label, Duration::from_millis(1));
        }
        let seen = family.snapshot();
        assert_eq!(seen.len(), FAMILY_MAX + 1);
        let overflow = seen.iter().find(|(label, _)| *label == u64::MAX);
        assert_eq!(overflow.map(|(_, h)| h.count), Some(10));
        // A label already present is still its own.
        family.observe(3, Duration::from_millis(1));
        assert_eq!(family.snapshot()[3].1.count, 2);
    }
}
