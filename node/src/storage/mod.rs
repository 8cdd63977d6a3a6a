//! Durable key-value storage behind the `Disk` seam.
//!
//! The Raft layer stores its log, vote and snapshots through `Disk`, never
//! through sled directly, so the simulation can substitute a disk that loses
//! whatever was not flushed when a node crashes (DESIGN.md, "Seams").

mod sled_disk;

pub use sled_disk::SledDisk;

/// The separate key spaces a node keeps. A write batch stays within one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// Raft log entries by big-endian index.
    Log,
    /// Small records: vote, committed id, last purged id.
    Meta,
    /// The latest state-machine snapshot.
    Snapshot,
}

impl Space {
    pub const ALL: [Space; 3] = [Space::Log, Space::Meta, Space::Snapshot];

    pub fn name(self) -> &'static str {
        match self {
            Space::Log => "log",
            Space::Meta => "meta",
            Space::Snapshot => "snapshot",
        }
    }
}

/// A key and its value, as read back.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One write within an atomic batch.
#[derive(Clone, Debug)]
pub enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("disk i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
}

/// A store of ordered key spaces. Writes become durable only at `flush`:
/// a crash may lose any write since the last one.
pub trait Disk: Send + Sync + 'static {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Applies the writes atomically.
    fn write(&self, space: Space, writes: Vec<Write>) -> Result<(), StorageError>;
    /// Entries with `from <= key < to`, in key order, at most `limit`.
    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError>;
    /// Keys with `from <= key < to`. A store that can list keys without
    /// reading values should say so.
    fn keys(&self, space: Space, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        let entries = self.range(space, from, to, usize::MAX)?;
        Ok(entries.into_iter().map(|(key, _)| key).collect())
    }
    fn last(&self, space: Space) -> Result<Option<KeyValue>, StorageError>;
    /// Makes every write so far durable (fsync); returns the bytes it wrote.
    fn flush(&self) -> Result<usize, StorageError>;
}
