//! openraft's log storage over the `Disk` seam.
//!
//! The disk's log syncs each append before it returns, and openraft is told
//! the entries are persisted only then: several entries handed over
//! together share one fsync (group commit). The vote, the commit point and
//! the purge point are small records beside the log.

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
use crate::storage::Disk;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";

/// Most entries one read returns; openraft asks again for the rest.
const ENTRIES_PER_READ_MAX: usize = 4096;

#[derive(Clone)]
pub struct LogStore {
    disk: Arc<dyn Disk>,
    stats: Arc<LogStats>,
}

/// What the log store wrote, for the metrics endpoint and the benchmark:
/// entries per flush shows group commit at work.
#[derive(Debug, Default)]
pub struct LogStats {
    pub appends: AtomicU64,
    pub entries: AtomicU64,
    pub entry_bytes: AtomicU64,
    pub flushes: AtomicU64,
}

impl LogStore {
    pub fn new(disk: Arc<dyn Disk>) -> Self {
        LogStore {
            disk,
            stats: Arc::default(),
        }
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

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| StorageIOError::write(&e))?;
        self.disk
            .put(key, bytes)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.disk.flush().map_err(|e| StorageIOError::write(&e))?;
        Ok(())
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
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = index_bound(range.start_bound(), true);
        let to = index_bound(range.end_bound(), false);
        self.disk
            .entries(from, to, ENTRIES_PER_READ_MAX)
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
    /// for a leader. Not flushed: a stale value only delays re-applying.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED_KEY, &committed)
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
        let appended = self
            .disk
            .append(entries)
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(appended);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

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
