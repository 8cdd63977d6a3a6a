//! When a node snapshots, and when its log gives disk back.
//!
//! A snapshot holds a small record per retained message, never a body
//! (`state_machine.rs`), but with a large backlog it is still tens of MB.
//! Two rules take one:
//! - by the log: `every` entries (or `LOG_BYTES_PER_SNAPSHOT`) after the
//!   last one, once the log written since outweighs the snapshot
//!   `LOG_PER_SNAPSHOT` times (unless the snapshot is small), so that
//!   snapshots add at most a sixteenth to what a node writes, whatever the
//!   backlog;
//! - by the disk: once a snapshot now would let the log release
//!   `RECLAIM_BYTES` of segments whose messages were all acknowledged (and
//!   more than a few times the snapshot), so that disk follows what is
//!   retained.
//!
//! Each check also releases the segments that are free already.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::typ::Raft;
use super::{LogStore, StateMachineStore};

/// How often the rules are checked.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// The log written since the last snapshot must outweigh the next one this
/// many times.
const LOG_PER_SNAPSHOT: u64 = 16;
/// A snapshot this small costs next to nothing: the rule by the log takes
/// it after `every` entries whatever the log weighs.
const SMALL_SNAPSHOT_BYTES: u64 = 1024 * 1024;
/// Log bytes after which a snapshot is due whatever the entry count (large
/// entries reach it long before `every`).
const LOG_BYTES_PER_SNAPSHOT: u64 = 256 * 1024 * 1024;
/// Disk a snapshot must free to be taken for it.
const RECLAIM_BYTES: u64 = 32 * 1024 * 1024;
/// A snapshot taken for the disk must free this many times its own size.
const RECLAIM_PER_SNAPSHOT: u64 = 4;
/// What a snapshot is reckoned to hold per retained message, to weigh one
/// not taken yet.
const SNAPSHOT_BYTES_PER_MESSAGE: u64 = 64;

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
        if let Err(e) = log.release(machine.release_floor()) {
            tracing::warn!(error = %e, "releasing log segments");
        }
        let log_bytes = log.stats().entry_bytes.load(Ordering::Relaxed);
        let since = log_bytes.saturating_sub(log_bytes_at_last);
        let retained = machine.read(|state| state.retained());
        let next_bytes = retained * SNAPSHOT_BYTES_PER_MESSAGE;
        let by_log = (applied.saturating_sub(snapshotted) >= every
            || since >= LOG_BYTES_PER_SNAPSHOT)
            && (next_bytes <= SMALL_SNAPSHOT_BYTES || since >= LOG_PER_SNAPSHOT * next_bytes);
        // What the log could release after a snapshot now, beyond what it
        // can release already.
        let oldest_now = machine.read(|state| state.oldest_body()).unwrap_or(applied);
        let reclaimable = log
            .bytes_before(oldest_now.min(applied))
            .saturating_sub(log.bytes_before(machine.release_floor().min(snapshotted)));
        let by_disk = applied > snapshotted
            && reclaimable >= RECLAIM_BYTES.max(RECLAIM_PER_SNAPSHOT * next_bytes);
        if by_log || by_disk {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            log_bytes_at_last = log_bytes;
        }
    }
}
