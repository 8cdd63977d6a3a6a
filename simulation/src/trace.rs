//! The run's event trace: a running hash of every event (two runs of one
//! seed must end with the same hash) and the last events, kept readable for
//! a failure report.

use std::collections::VecDeque;
use std::fmt::Display;
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Events kept for the failure report.
const RECENT_EVENTS_MAX: usize = 60;

#[derive(Clone, Default)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
    /// Print every event as it happens (`--trace`).
    echo: bool,
}

#[derive(Default)]
struct Inner {
    /// SipHash with fixed zero keys: the same events give the same hash in
    /// every process.
    hasher: DefaultHasher,
    events: u64,
    recent: VecDeque<String>,
}

impl Trace {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn echoing() -> Self {
        Trace {
            echo: true,
            ..Trace::default()
        }
    }

    pub fn record(&self, at: Duration, event: impl Display) {
        let line = format!("{:>9.3}s {event}", at.as_secs_f64());
        if self.echo {
            eprintln!("{line}");
        }
        let mut inner = self.lock();
        inner.hasher.write(line.as_bytes());
        inner.events += 1;
        if inner.recent.len() == RECENT_EVENTS_MAX {
            inner.recent.pop_front();
        }
        inner.recent.push_back(line);
    }

    pub fn hash(&self) -> u64 {
        self.lock().hasher.finish()
    }

    pub fn events(&self) -> u64 {
        self.lock().events
    }

    pub fn recent(&self) -> Vec<String> {
        self.lock().recent.iter().cloned().collect()
    }
}

/// Simulated time, from inside a host or from the driver.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}
