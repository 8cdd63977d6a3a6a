//! Durable storage behind the `Disk` seam: small records, the Raft log and
//! the latest snapshot.
//!
//! The Raft layer stores its vote, log and snapshots through `Disk`, never
//! through files or sled directly, so the simulation can substitute a disk
//! that loses whatever was not flushed when a node crashes (DESIGN.md,
//! "Seams").

mod imports;
mod local_disk;
mod segment_log;
mod snapshot_data;

pub use local_disk::LocalDisk;
pub use snapshot_data::SnapshotData;

/// A log entry's index and its encoded bytes.
pub type LogEntry = (u64, Vec<u8>);

/// Writes a snapshot's data as it is encoded or received, so that no
/// buffer ever holds the whole state (`Disk::save_snapshot`).
pub type WriteSnapshot<'a> = &'a mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>;

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

/// A node's storage, in four parts with their own durability:
/// - small records (vote, commit and purge points), durable at `flush`: a
///   crash may lose any record put since the last one;
/// - the Raft log, whose appends, truncations and releases are durable on
///   return; it is also the body store: a purged entry stays readable
///   (`entry`) until released, since retained messages' bodies are in it;
/// - the latest snapshot, replaced whole and durably, and one being
///   received, which a crash forgets;
/// - imports: entries shipped with an installed snapshot, for the bodies
///   its messages need, durable on return.
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
    /// Hides the log entries with `index <= upto` from `entries` and
    /// `last_entry`; they stay on disk until `release`. A crash may undo
    /// it: the caller records the purge point durably first and purges
    /// again when it opens the log.
    fn purge(&self, upto: u64) -> Result<(), StorageError>;
    /// Deletes what holds only purged entries below `below`, in the log and
    /// in the kept import, a segment at a time.
    fn release(&self, below: u64) -> Result<(), StorageError>;
    /// Bytes of log segments, the kept import's included, that
    /// `release(below)` would delete, were the log purged that far: a node
    /// that rejoined by snapshot holds most of its bodies in the import.
    fn log_bytes_before(&self, below: u64) -> u64;
    /// The log entry at `index` if it is still on disk, purged or not.
    fn entry(&self, index: u64) -> Result<Option<LogEntry>, StorageError>;

    /// Stores entries shipped with snapshot `id`: a batch follows the one
    /// before or starts the import over at its first index.
    fn import(&self, id: &str, entries: Vec<LogEntry>) -> Result<(), StorageError>;
    /// Whether the import of `id` holds every index in `from..=to`; once
    /// it does, later writes to it are ignored.
    fn seal_import(&self, id: &str, from: u64, to: u64) -> bool;
    /// Makes the import of `id` the one `imported` reads, if there is one,
    /// and deletes every other.
    fn keep_import(&self, id: &str) -> Result<(), StorageError>;
    /// The entry at `index` in the kept import.
    fn imported(&self, index: u64) -> Result<Option<LogEntry>, StorageError>;

    /// Replaces the snapshot: its meta, then its data as `data` writes it.
    /// After a crash either the old or the new one is there, whole.
    fn save_snapshot(&self, meta: &[u8], data: WriteSnapshot<'_>) -> Result<(), StorageError>;
    /// The snapshot's meta, and its data to read.
    fn load_snapshot(&self) -> Result<Option<(Vec<u8>, SnapshotData)>, StorageError>;
    /// Somewhere empty to receive a snapshot's data into, before
    /// `save_snapshot` makes it the snapshot.
    fn receive_snapshot(&self) -> Result<SnapshotData, StorageError>;

    /// True when nothing was ever stored: no record, entry or snapshot.
    fn is_empty(&self) -> Result<bool, StorageError>;
}
