//! openraft's log storage over the `Disk` seam.
//!
//! The disk's log syncs each append before it returns, and openraft is told
//! the entries are persisted only then: several entries handed over
//! together share one fsync (group commit). The vote, the commit point and
//! the purge point are small records beside the log.
//!
//! Reads return every entry asked for: openraft 0.9 checks that a read
//! covers its range and stops its core otherwise. What keeps each read
//! small is who asks: replication reads at most `max_payload_entries` and
//! `REPLICATION_BYTES_MAX` at a time (`limited_get_log_entries`),
//! a restart re-applies up to the recorded commit point 64 entries at a
//! time, and everything past that point is applied in one read when a
//! leader commits it. The commit point is therefore made durable whenever
//! the log has grown by `COMMITTED_LAG_BYTES_MAX` since it last was, so
//! that one read holds at most that much plus the entries in flight
//! (ARCHITECTURE.md, "Storage and restart").

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::typ::{Entry, LogId, StorageError, Vote};
use super::{decode, encode, TypeConfig};
use crate::histogram::Histogram;
use crate::planted::{self, Bug};
use crate::storage::Disk;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";

/// The read cap that once stopped the Raft core of every node restarted
/// with more than this many entries to re-apply (planted bug `read-cap`).
const PLANTED_READ_CAP: u64 = 4096;

/// Bytes of entries one AppendEntries carries at most (a single larger
/// entry goes alone).
const REPLICATION_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Log bytes appended after which the commit point is flushed when it
/// next moves. A restarted node applies the log between its durable commit
/// point and the leader's in one read, so this bounds that read.
const COMMITTED_LAG_BYTES_MAX: u64 = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct LogStore {
    disk: Arc<dyn Disk>,
    stats: Arc<LogStats>,
    /// `stats.entry_bytes` at the last flush of the records.
    bytes_at_flush: Arc<AtomicU64>,
}

/// What the log store wrote, for the metrics endpoint and the benchmark:
/// entries per flush shows group commit at work.
#[derive(Debug, Default)]
pub struct LogStats {
    pub appends: AtomicU64,
    pub entries: AtomicU64,
    pub entry_bytes: AtomicU64,
    pub flushes: AtomicU64,
    /// How long each append (with its fsync) or flush took.
    pub fsync: Histogram,
}

impl LogStore {
    pub fn new(disk: Arc<dyn Disk>) -> Self {
        LogStore {
            disk,
            stats: Arc::default(),
            bytes_at_flush: Arc::default(),
        }
    }

    /// The disk the log is on, which the body store reads too.
    pub fn disk(&self) -> Arc<dyn Disk> {
        self.disk.clone()
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// The last commit point openraft recorded, for status reports.
    pub fn committed_index(&self) -> Result<Option<u64>, StorageError> {
        let committed: Option<Option<LogId>> = self.read_meta(COMMITTED_KEY)?;
        Ok(committed.flatten().map(|id| id.index))
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let bytes = self.disk.get(key).map_err(|e| StorageIOError::read(&e))?;
        bytes
            .map(|b| decode(&b).map_err(|e| StorageIOError::read(&e).into()))
            .transpose()
    }

    /// The entry the log is purged up to: entries up to it live only in
    /// the snapshot.
    pub fn purged_index(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.read_meta::<LogId>(PURGED_KEY)?.map(|id| id.index))
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| StorageIOError::write(&e))?;
        self.disk
            .put(key, bytes)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    /// Makes every record durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        let appended = self.stats.entry_bytes.load(Ordering::Relaxed);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        self.disk.flush().map_err(|e| StorageIOError::write(&e))?;
        self.stats.fsync.observe(started.elapsed());
        self.bytes_at_flush.store(appended, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes log segments below `below` that are purged: the state
    /// machine says how far back bodies are still needed
    /// (`StateMachineStore::release_floor`).
    pub fn release(&self, below: u64) -> Result<(), StorageError> {
        let below = if planted::active(Bug::ReleaseReferenced) {
            u64::MAX
        } else {
            below
        };
        self.disk
            .release(below)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// Bytes of log segments a release below `below` would delete, were
    /// the log purged that far.
    pub fn bytes_before(&self, below: u64) -> u64 {
        self.disk.log_bytes_before(below)
    }

    /// Log bytes appended since the records were last flushed.
    fn bytes_since_flush(&self) -> u64 {
        let appended = self.stats.entry_bytes.load(Ordering::Relaxed);
        appended.saturating_sub(self.bytes_at_flush.load(Ordering::Relaxed))
    }
}

fn index_bound(bound: Bound<&u64>, start: bool) -> u64 {
    match (bound, start) {
        (Bound::Included(i), true) => *i,
        (Bound::Excluded(i), true) => i.saturating_add(1),
        (Bound::Unbounded, true) => 0,
        (Bound::Included(i), false) => i.saturating_add(1),
        (Bound::Excluded(i), false) => *i,
        (Bound::Unbounded, false) => u64::MAX,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    /// Replication's read: entries from `start`, stopping before `end` or
    /// once they weigh `REPLICATION_BYTES_MAX` (always at least one). An
    /// AppendEntries must arrive within openraft's heartbeat interval
    /// (100 ms): eight entries of 4 MiB never did, so a follower far behind
    /// (wiped, say) never caught up. Purged entries are read too while
    /// still on disk: a replication begun before a purge still asks for
    /// them, and finding none it asked again forever (found by the backlog
    /// bench, a follower wiped just after the leader's first snapshot).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        for index in start..end {
            if !entries.is_empty() && bytes >= REPLICATION_BYTES_MAX {
                break;
            }
            let read = self
                .disk
                .entry(index)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let Some((_, encoded)) = read else {
                break;
            };
            bytes += encoded.len();
            entries.push(decode(&encoded).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(entries)
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = index_bound(range.start_bound(), true);
        let mut to = index_bound(range.end_bound(), false);
        if planted::active(Bug::ReadCap) {
            to = to.min(from.saturating_add(PLANTED_READ_CAP));
        }
        self.disk
            .entries(from, to)
            .map_err(|e| StorageIOError::read_logs(&e))?
            .into_iter()
            .map(|(_, bytes)| decode(&bytes).map_err(|e| StorageIOError::read_logs(&e).into()))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED_KEY)?;
        if let Some(purged) = last_purged_log_id {
            // A crash may have brought back part of what was purged.
            self.disk
                .purge(purged.index)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        let last = self
            .disk
            .last_entry()
            .map_err(|e| StorageIOError::read_logs(&e))?
            .map(|(_, bytes)| decode::<Entry>(&bytes).map(|e| e.log_id))
            .transpose()
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE_KEY, vote)?;
        self.flush()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE_KEY)
    }

    /// Lets a restarted node re-apply what it knew committed without waiting
    /// for a leader. Flushed only once the log has grown by
    /// `COMMITTED_LAG_BYTES_MAX`: a stale value costs no safety, only a
    /// larger first apply after a restart.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED_KEY, &committed)?;
        if self.bytes_since_flush() >= COMMITTED_LAG_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries
            .into_iter()
            .map(|entry| {
                let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
                Ok((entry.log_id.index, bytes))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let stats = &self.stats;
        stats.appends.fetch_add(1, Ordering::Relaxed);
        stats
            .entries
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let bytes: usize = entries.iter().map(|(_, bytes)| bytes.len()).sum();
        stats.entry_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let appended = self
            .disk
            .append(entries)
            .map_err(|e| std::io::Error::other(e.to_string()));
        stats.fsync.observe(started.elapsed());
        callback.log_io_completed(appended);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// Hides the entries; the snapshot loop releases their segments once
    /// no retained message's body is in them (`release`).
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point durably first: the log may forget a purge
        // in a crash and is purged again on restart.
        self.write_meta(PURGED_KEY, &log_id)?;
        self.flush()?;
        self.disk
            .purge(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::storage::LocalDisk;

    fn store() -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = LocalDisk::open(dir.path(), 1024 * 1024).expect("open disk");
        (dir, LogStore::new(Arc::new(disk)))
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// Blank entries at `indexes`.
    fn entries(indexes: std::ops::Range<u64>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            })
            .collect()
    }

    /// Appends without openraft's callback: `Disk::append` syncs anyway.
    fn append(store: &LogStore, entries: Vec<Entry>) {
        let encoded = entries
            .iter()
            .map(|entry| (entry.log_id.index, encode(entry).expect("encode")))
            .collect();
        store.disk.append(encoded).expect("append");
    }

    #[tokio::test]
    async fn a_read_returns_the_whole_range_however_long() {
        // The old cap was 4,096 entries: openraft re-applies a restart's
        // tail with one read and stops its core if the read is short.
        let (_dir, mut store) = store();
        append(&store, entries(1..10_001));
        let read = store.try_get_log_entries(1..10_001).await.expect("read");
        assert_eq!(read.len(), 10_000);
        assert_eq!(read.last().map(|e| e.log_id.index), Some(10_000));
    }

    /// Normal entries of `bytes` payload bytes each at `indexes`.
    fn big_entries(indexes: std::ops::Range<u64>, bytes: usize) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                log_id: log_id(index),
                payload: EntryPayload::Normal(crate::machine::Request {
                    stamp_ms: 0,
                    commands: vec![crate::machine::Command::Publish {
                        topic: "t".into(),
                        messages: vec![crate::machine::NewMessage {
                            key: None,
                            payload: vec![0; bytes].into(),
                            headers: Default::default(),
                            properties: None,
                        }],
                        producer: None,
                    }],
                }),
            })
            .collect()
    }

    #[tokio::test]
    async fn replication_reads_stop_at_the_byte_bound_but_never_return_nothing() {
        let (_dir, mut store) = store();
        let mib = 1024 * 1024;
        append(&store, big_entries(1..11, mib));
        let read = store.limited_get_log_entries(1, 11).await.expect("read");
        let bytes = REPLICATION_BYTES_MAX / mib;
        // Stops at the first entry that takes it to the bound.
        assert_eq!(read.len(), bytes);
        assert_eq!(read[0].log_id.index, 1);
        // An entry past the bound on its own still goes, alone.
        append(&store, big_entries(11..13, REPLICATION_BYTES_MAX + 1));
        let read = store.limited_get_log_entries(11, 13).await.expect("read");
        assert_eq!(read.len(), 1);
        // The whole range when it is small.
        let read = store.limited_get_log_entries(1, 3).await.expect("read");
        assert_eq!(read.len(), 2);
    }

    /// The appended-bytes count is advanced by hand: `append` needs
    /// openraft's callback, and 32 MiB of entries would only slow this.
    #[tokio::test]
    async fn the_commit_point_is_flushed_once_the_log_grew_past_the_lag_bound() {
        let (_dir, mut store) = store();
        let flushes = |store: &LogStore| store.stats().flushes.load(Ordering::Relaxed);
        let half = COMMITTED_LAG_BYTES_MAX / 2;

        // Half the bound appended: the commit point is put, not flushed.
        store.stats.entry_bytes.fetch_add(half, Ordering::Relaxed);
        let before = flushes(&store);
        store.save_committed(Some(log_id(1))).await.expect("save");
        assert_eq!(flushes(&store), before);

        // Past the bound: flushed, and the count starts again.
        store.stats.entry_bytes.fetch_add(half, Ordering::Relaxed);
        store.save_committed(Some(log_id(2))).await.expect("save");
        assert_eq!(flushes(&store), before + 1);
        store.save_committed(Some(log_id(3))).await.expect("save");
        assert_eq!(flushes(&store), before + 1);
        assert_eq!(store.bytes_since_flush(), 0);
    }
}
