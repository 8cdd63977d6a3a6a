//! The production `Disk`: one sled database per node, one tree per space.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Disk, KeyValue, Space, StorageError, Write};

pub struct SledDisk {
    db: sled::Db,
    trees: BTreeMap<Space, sled::Tree>,
}

impl SledDisk {
    /// Opens (or creates) the database in `dir`. sled's background flusher is
    /// off: writes are durable only when the Raft layer flushes, and it does
    /// so before it reports anything persisted (STACK.md).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()?;
        let trees = Space::ALL
            .into_iter()
            .map(|space| Ok((space, db.open_tree(space.name())?)))
            .collect::<Result<_, StorageError>>()?;
        Ok(SledDisk { db, trees })
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        &self.trees[&space]
    }
}

impl Disk for SledDisk {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree(space).get(key)?.map(|v| v.to_vec()))
    }

    fn write(&self, space: Space, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for write in writes {
            match write {
                Write::Put(key, value) => batch.insert(key, value),
                Write::Delete(key) => batch.remove(key),
            }
        }
        Ok(self.tree(space).apply_batch(batch)?)
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        self.tree(space)
            .range(from..to)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn keys(&self, space: Space, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        self.tree(space)
            .range(from..to)
            .keys()
            .map(|k| Ok(k?.to_vec()))
            .collect()
    }

    fn last(&self, space: Space) -> Result<Option<KeyValue>, StorageError> {
        Ok(self
            .tree(space)
            .last()?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn flush(&self) -> Result<usize, StorageError> {
        Ok(self.db.flush()?)
    }
}
