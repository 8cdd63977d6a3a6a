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
    let mut log_since = LogSince::default();
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
        // What the log could release after a snapshot now, beyond what it
        // can release already.
        let oldest_now = machine.read(|state| state.oldest_body()).unwrap_or(applied);
        let reclaimable = log
            .bytes_before(oldest_now.min(applied))
            .saturating_sub(log.bytes_before(machine.release_floor().min(snapshotted)));
        let weights = Weights {
            applied,
            snapshotted,
            every,
            log_since: log_since.at(snapshotted, log_bytes),
            retained: machine.read(|state| state.retained()),
            reclaimable,
        };
        if due(&weights) {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            log_since.restart(log_bytes);
        }
    }
}

/// The log bytes written since the latest snapshot, whichever way it came:
/// taken here, or installed from the leader (then the log before it is
/// gone, and counting it would take a snapshot due too soon).
#[derive(Debug, Default)]
struct LogSince {
    /// The log's `entry_bytes` at the latest snapshot.
    bytes_at: u64,
    /// The latest snapshot's end, as last seen; `None` before the first
    /// check, which starts the count.
    snapshotted: Option<u64>,
}

impl LogSince {
    /// The bytes since the latest snapshot, `log_bytes` being the log's
    /// count now; a snapshot that moved since the last call starts over.
    fn at(&mut self, snapshotted: u64, log_bytes: u64) -> u64 {
        if self.snapshotted != Some(snapshotted) {
            self.snapshotted = Some(snapshotted);
            self.bytes_at = log_bytes;
        }
        log_bytes.saturating_sub(self.bytes_at)
    }

    /// Starts over at a snapshot just requested, so that the checks before
    /// it is built do not request it again.
    fn restart(&mut self, log_bytes: u64) {
        self.bytes_at = log_bytes;
    }
}

/// What the rules weigh at a check.
#[derive(Clone, Copy, Debug)]
struct Weights {
    /// Entries applied, and covered by the latest snapshot.
    applied: u64,
    snapshotted: u64,
    /// The rule by the log's entry count.
    every: u64,
    /// Log bytes written since the latest snapshot.
    log_since: u64,
    /// Messages the state retains: what the next snapshot will weigh.
    retained: u64,
    /// Log bytes a snapshot now would let go, beyond what can go already.
    reclaimable: u64,
}

/// Whether a snapshot is due, by the log or by the disk (module doc).
fn due(weights: &Weights) -> bool {
    let next_bytes = weights.retained * SNAPSHOT_BYTES_PER_MESSAGE;
    let by_log = (weights.applied.saturating_sub(weights.snapshotted) >= weights.every
        || weights.log_since >= LOG_BYTES_PER_SNAPSHOT)
        && (next_bytes <= SMALL_SNAPSHOT_BYTES
            || weights.log_since >= LOG_PER_SNAPSHOT * next_bytes);
    let by_disk = weights.applied > weights.snapshotted
        && weights.reclaimable >= RECLAIM_BYTES.max(RECLAIM_PER_SNAPSHOT * next_bytes);
    by_log || by_disk
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    /// Messages whose snapshot is reckoned at `SMALL_SNAPSHOT_BYTES`.
    const SMALL: u64 = SMALL_SNAPSHOT_BYTES / SNAPSHOT_BYTES_PER_MESSAGE;

    /// Nothing due: a few entries since a snapshot, an empty state.
    const QUIET: Weights = Weights {
        applied: 1_100,
        snapshotted: 1_000,
        every: 20_000,
        log_since: MIB,
        retained: 0,
        reclaimable: 0,
    };

    fn check(weights: Weights, expected: bool) {
        assert_eq!(due(&weights), expected, "{weights:?}");
    }

    #[test]
    fn the_log_rule_takes_one_every_so_many_entries_or_bytes() {
        check(QUIET, false);
        let entries = |n: u64| Weights {
            applied: 1_000 + n,
            ..QUIET
        };
        check(entries(19_999), false);
        check(entries(20_000), true);
        let bytes = |log_since| Weights { log_since, ..QUIET };
        check(bytes(LOG_BYTES_PER_SNAPSHOT - 1), false);
        check(bytes(LOG_BYTES_PER_SNAPSHOT), true);
    }

    #[test]
    fn a_large_state_waits_until_the_log_outweighs_it() {
        // Up to a MiB of snapshot, the count alone decides.
        let due_by_count = Weights {
            applied: 21_000,
            ..QUIET
        };
        check(
            Weights {
                retained: SMALL,
                ..due_by_count
            },
            true,
        );
        check(
            Weights {
                retained: SMALL + 1,
                ..due_by_count
            },
            false,
        );
        // Beyond it, the log since must weigh sixteen snapshots.
        let retained = 1_000_000;
        let next = retained * SNAPSHOT_BYTES_PER_MESSAGE;
        let large = Weights {
            retained,
            ..due_by_count
        };
        check(
            Weights {
                log_since: LOG_PER_SNAPSHOT * next - 1,
                ..large
            },
            false,
        );
        check(
            Weights {
                log_since: LOG_PER_SNAPSHOT * next,
                ..large
            },
            true,
        );
    }

    #[test]
    fn the_log_since_counts_from_the_latest_snapshot_however_it_came() {
        let mut since = LogSince::default();
        // The first check starts the count: the log before it was there
        // when the node started.
        assert_eq!(since.at(0, 500), 0);
        assert_eq!(since.at(0, 800), 300);
        // A snapshot requested here starts over at once.
        since.restart(800);
        assert_eq!(since.at(0, 900), 100);
        // A snapshot installed from the leader (the index moves with no
        // request here) starts over too.
        assert_eq!(since.at(20_000, 5_000), 0);
        assert_eq!(since.at(20_000, 5_700), 700);
    }

    #[test]
    fn the_disk_rule_takes_one_that_frees_enough() {
        let reclaim = |reclaimable, retained| Weights {
            reclaimable,
            retained,
            ..QUIET
        };
        check(reclaim(RECLAIM_BYTES - 1, 0), false);
        check(reclaim(RECLAIM_BYTES, 0), true);
        // It must free four times what it writes once that is more.
        let retained = 1_000_000;
        let four = RECLAIM_PER_SNAPSHOT * retained * SNAPSHOT_BYTES_PER_MESSAGE;
        check(reclaim(four - 1, retained), false);
        check(reclaim(four, retained), true);
        // Never with nothing applied since the last one.
        check(
            Weights {
                snapshotted: QUIET.applied,
                ..reclaim(four, 0)
            },
            false,
        );
    }
}
