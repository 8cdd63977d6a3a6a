//! Copies the few live bodies of old log entries forward, so that a handful
//! of old unacknowledged messages does not keep every segment after them.
//!
//! The log is the body store (ARCHITECTURE.md, "Bodies"): it keeps every
//! entry from the oldest one holding a retained body. A topic nobody reads,
//! or one message redelivered for hours, would pin the log of every busy
//! topic beside it. When the oldest live entries keep little alive against
//! what they pin, the leader proposes `Command::Relocate` with copies of
//! those bodies; once applied, every replica's records point at the copies
//! and the next snapshot lets the old segments go. Deciding is the leader's
//! alone and needs no agreement: applying is deterministic whatever it
//! proposes, and a body acked meanwhile is ignored.

use std::sync::Arc;
use std::time::Duration;

use crate::machine::{Command, Held};
use crate::planted::{self, Bug};

use super::{Broker, ProposeError};

/// How often the leader weighs the oldest live entries.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one relocation to commit.
const RELOCATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bodies one relocation copies at most: one entry, well inside what a
/// replication read carries.
pub const RELOCATE_BYTES_MAX: u64 = 2 * 1024 * 1024;
/// A relocation must free at least this many times the bytes it copies, so
/// that compaction adds at most an eighth to what the log writes.
const FREED_PER_COPIED: u64 = 8;
/// Log a relocation must free, by default: four segments.
pub const COMPACT_FREES_BYTES: u64 = 64 * 1024 * 1024;

/// Runs until the node shuts down. `frees_min`: the log a relocation must
/// free (`COMPACT_FREES_BYTES`).
pub async fn compact_when_due(broker: Arc<Broker>, frees_min: u64) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if broker.leadership().is_err() {
            continue;
        }
        let Some(log_end) = broker.machine.applied_index().map(|i| i + 1) else {
            continue;
        };
        let oldest = broker.machine.read(oldest_live);
        let log = &broker.log;
        let Some(below) = relocation_end(&oldest, log_end, frees_min, |i| log.bytes_before(i))
        else {
            continue;
        };
        let from: Vec<_> = broker
            .machine
            .read(|state| state.bodies_below(below))
            .into_iter()
            .collect();
        let mut messages: Vec<_> = match from.iter().map(|at| broker.bodies.body(*at)).collect() {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "compaction: reading a body to relocate");
                continue;
            }
        };
        if planted::active(Bug::RelocateShifted) {
            messages.rotate_left(1);
        }
        let copies = from.len();
        let command = Command::Relocate { from, messages };
        match tokio::time::timeout(RELOCATE_TIMEOUT, broker.proposer.propose(command)).await {
            Ok(Err(ProposeError::ShuttingDown)) => return,
            Ok(Err(e)) => tracing::debug!(error = %e, "relocation not committed"),
            Ok(Ok(_)) => tracing::info!(copies, below, "relocated old bodies"),
            Err(_) => tracing::debug!("relocation timed out"),
        }
    }
}

/// The oldest entries holding live bodies, as many as one relocation could
/// copy and the one after.
fn oldest_live(state: &crate::machine::State) -> Vec<(u64, Held)> {
    let mut copied = 0;
    state
        .live_bodies()
        .take_while(|(_, held)| {
            let fits = copied <= RELOCATE_BYTES_MAX;
            copied += held.bytes;
            fits
        })
        .collect()
}

/// Where a relocation should end, if one is worth it: every body in an
/// entry below the index returned is copied. `oldest`: the oldest entries
/// holding live bodies, in order; `log_end`: the index after the last
/// applied entry; `bytes_before(i)`: the bytes of log segments wholly
/// before entry `i`, what releasing up to `i` would give back.
///
/// Of the ends that copy at most `RELOCATE_BYTES_MAX`, free at least
/// `frees_min` and `FREED_PER_COPIED` times what they copy, it takes the
/// one that gains most (freed less the copy's weight), so that bodies just
/// published, about to be consumed, stay where they are.
fn relocation_end(
    oldest: &[(u64, Held)],
    log_end: u64,
    frees_min: u64,
    bytes_before: impl Fn(u64) -> u64,
) -> Option<u64> {
    let (first, _) = *oldest.first()?;
    let start = bytes_before(first);
    let mut copied = 0;
    let mut best: Option<(u64, u64)> = None;
    for (i, (_, held)) in oldest.iter().enumerate() {
        copied += held.bytes;
        if copied > RELOCATE_BYTES_MAX {
            break;
        }
        let end = oldest.get(i + 1).map_or(log_end, |(index, _)| *index);
        let freed = bytes_before(end).saturating_sub(start);
        let Some(gain) = freed.checked_sub(FREED_PER_COPIED * copied) else {
            continue;
        };
        if freed >= frees_min && best.is_none_or(|(_, best_gain)| gain > best_gain) {
            best = Some((end, gain));
        }
    }
    best.map(|(end, _)| end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// `live`: (index, bytes) of the oldest live entries; the log weighs
    /// 1 MiB per entry, released a whole entry at a time.
    fn check(live: &[(u64, u64)], log_end: u64, frees_min: u64, expected: Option<u64>) {
        let oldest: Vec<(u64, Held)> = live
            .iter()
            .map(|&(index, bytes)| (index, Held { messages: 1, bytes }))
            .collect();
        let got = relocation_end(&oldest, log_end, frees_min, |i| i * MIB);
        assert_eq!(got, expected, "live {live:?}, log end {log_end}");
    }

    #[test]
    fn relocates_only_what_frees_far_more_than_it_copies() {
        // Nothing live: nothing to do.
        check(&[], 1000, 64 * MIB, None);
        // A few old bodies pin 900 MiB of log before a live tail just
        // published: copy them, not the tail.
        check(
            &[(10, 4096), (11, 4096), (995, MIB)],
            1000,
            64 * MIB,
            Some(995),
        );
        // A tail further back frees more than eight times its size: it
        // goes too.
        check(&[(10, 4096), (80, MIB)], 90, 64 * MIB, Some(90));
        check(&[(10, 4096), (80, MIB)], 85, 64 * MIB, Some(80));
        // The oldest entries are as full as the log is: never.
        let full: Vec<(u64, u64)> = (0..100).map(|i| (i, MIB)).collect();
        check(&full, 100, 64 * MIB, None);
        // Freeing less than the minimum is not worth an entry.
        check(&[(10, 4096), (50, MIB)], 60, 64 * MIB, None);
        // With a small minimum, the ratio decides: 2 MiB for 10 MiB is
        // not enough.
        check(&[(0, 2 * MIB), (10, 4096)], 12, MIB, None);
        check(&[(0, MIB), (10, MIB / 2)], 12, MIB, Some(10));
        // One body over the bound of a relocation: never.
        check(&[(0, 3 * MIB), (70, 4096)], 100, 64 * MIB, None);
        // Copies stop at the bound, so the end is the entry that would
        // have crossed it.
        let spread: Vec<(u64, u64)> = (0..10).map(|i| (i * 100, MIB / 2)).collect();
        check(&spread, 1000, 64 * MIB, Some(400));
        // The newest entries are copied too when the log behind them is
        // long enough: a backlog nobody reads, everything else consumed.
        check(&[(10, 4096)], 1000, 64 * MIB, Some(1000));
    }
}
