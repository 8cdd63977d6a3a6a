//! Durable storage behind the `Disk` seam: small records, the Raft log and
//! the latest snapshot.
//!
//! The Raft layer stores its vote, log and snapshots through `Disk`, never
//! through files or sled directly, so the simulation can substitute a disk
//! that loses whatever was not flushed when a node crashes (DESIGN.md,
//! "Seams").

mod local_disk;
mod segment_log;

pub use local_disk::LocalDisk;

/// A log entry's index and its encoded bytes.
pub type LogEntry = (u64, Vec<u8>);

/// A snapshot's encoded meta and data.
pub type SnapshotBytes = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("disk i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("log entry {index} does not follow the last entry {last}")]
    LogGap { index: u64, last: u64 },
    #[error("log entry of {0} bytes is too large to store")]
    EntryTooLarge(usize),
    #[error("corrupt log: {0}")]
    Corrupt(String),
    #[error("corrupt snapshot file: {0}")]
    CorruptSnapshot(&'static str),
}

/// A node's storage, in three parts with their own durability:
/// - small records (vote, commit and purge points), durable at `flush`: a
///   crash may lose any record put since the last one;
/// - the Raft log, whose appends and truncations are durable on return;
/// - the latest snapshot, replaced whole and durably.
pub trait Disk: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), StorageError>;
    /// Makes every record put so far durable (fsync).
    fn flush(&self) -> Result<(), StorageError>;

    /// Appends log entries with consecutive indexes following the last
    /// entry (any index when the log is empty) and syncs them: one sync for
    /// all of them.
    fn append(&self, entries: Vec<LogEntry>) -> Result<(), StorageError>;
    /// Every log entry with `from <= index < to`, in order. openraft checks
    /// that a read covers the range it asked for, so there is no cap here:
    /// the callers ask for bounded ranges (`raft::log_store`).
    fn entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>, StorageError>;
    fn last_entry(&self) -> Result<Option<LogEntry>, StorageError>;
    /// Removes the log entries with `index >= from`, durably.
    fn truncate(&self, from: u64) -> Result<(), StorageError>;
    /// Removes the log entries with `index <= upto`. A crash may undo it:
    /// the caller records the purge point durably first and purges again
    /// when it opens the log.
    fn purge(&self, upto: u64) -> Result<(), StorageError>;

    /// Replaces the snapshot, its meta and its data: after a crash either
    /// the old or the new one is there, whole.
    fn save_snapshot(&self, meta: &[u8], data: &[u8]) -> Result<(), StorageError>;
    /// The snapshot's meta and data.
    fn load_snapshot(&self) -> Result<Option<SnapshotBytes>, StorageError>;

    /// True when nothing was ever stored: no record, entry or snapshot.
    fn is_empty(&self) -> Result<bool, StorageError>;
}
