//! The wall-clock seam under simulation: simulated time from a fixed epoch,
//! plus an offset the fault injector moves to make the leader's clock jump.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use raftmq_node::clock::Clock;

/// 2026-01-01T00:00:00Z: every run starts at the same wall time.
const EPOCH_MS: i64 = 1_767_225_600_000;

#[derive(Clone, Default)]
pub struct SimClock {
    offset_ms: Arc<AtomicI64>,
}

impl SimClock {
    /// Moves this node's wall clock by `delta_ms` (either way).
    pub fn jump(&self, delta_ms: i64) {
        self.offset_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis() as i64;
        (EPOCH_MS + elapsed + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }
}
