//! When a node snapshots: `every` entries after the last snapshot at the
//! earliest, and only once the log written since then outweighs that
//! snapshot.
//!
//! A snapshot is the whole state, message bodies included. Taken every N
//! entries whatever its size, it rewrote a standing backlog in full each
//! time: with 200 MB retained and one small message per entry, each node
//! wrote 200 MB of snapshot per 20 MB of traffic and stalled commits while
//! doing so (BENCHMARKS.md). Waiting for the log to catch up bounds what
//! snapshots write by what the log wrote: at most about two bytes on disk
//! per byte of payload, whatever the backlog.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::typ::Raft;
use super::{LogStore, StateMachineStore};

/// How often the rule is checked.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Runs until the Raft node shuts down.
pub async fn snapshot_when_due(raft: Raft, log: LogStore, machine: StateMachineStore, every: u64) {
    let mut metrics = raft.metrics();
    let mut log_bytes_at_last = log.stats().entry_bytes.load(Ordering::Relaxed);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    loop {
        ticks.tick().await;
        if metrics.has_changed().is_err() {
            return;
        }
        let (applied, snapshotted) = {
            let m = metrics.borrow_and_update();
            (
                m.last_applied.map_or(0, |id| id.index + 1),
                m.snapshot.map_or(0, |id| id.index + 1),
            )
        };
        let log_bytes = log.stats().entry_bytes.load(Ordering::Relaxed);
        let due = applied.saturating_sub(snapshotted) >= every
            && log_bytes.saturating_sub(log_bytes_at_last) >= machine.snapshot_bytes();
        if due {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            log_bytes_at_last = log_bytes;
        }
    }
}
