//! The disk seam under simulation: an in-memory store that keeps what was
//! flushed and, on a crash, loses a random tail of what was not.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use raftmq_node::storage::{Disk, KeyValue, Space, StorageError, Write};
use rand::Rng;

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct Contents {
    /// What reads see.
    live: BTreeMap<Space, Tree>,
    /// What survives a crash.
    durable: BTreeMap<Space, Tree>,
    /// Write batches since the last flush, oldest first.
    unflushed: Vec<(Space, Vec<Write>)>,
}

#[derive(Default)]
pub struct SimDisk {
    contents: Mutex<Contents>,
}

fn apply(trees: &mut BTreeMap<Space, Tree>, space: Space, writes: &[Write]) {
    let tree = trees.entry(space).or_default();
    for write in writes {
        match write {
            Write::Put(key, value) => {
                tree.insert(key.clone(), value.clone());
            }
            Write::Delete(key) => {
                tree.remove(key);
            }
        }
    }
}

impl SimDisk {
    fn lock(&self) -> MutexGuard<'_, Contents> {
        self.contents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A power failure: a random prefix of the unflushed batches reached the
    /// platter (each batch whole or not at all), the rest is gone. Answers
    /// how many batches were lost.
    pub fn crash(&self, rng: &mut impl Rng) -> usize {
        let mut contents = self.lock();
        let unflushed = std::mem::take(&mut contents.unflushed);
        let kept = rng.gen_range(0..=unflushed.len());
        for (space, writes) in &unflushed[..kept] {
            apply(&mut contents.durable, *space, writes);
        }
        contents.live = contents.durable.clone();
        unflushed.len() - kept
    }
}

impl Disk for SimDisk {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .lock()
            .live
            .get(&space)
            .and_then(|t| t.get(key))
            .cloned())
    }

    fn write(&self, space: Space, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut contents = self.lock();
        apply(&mut contents.live, space, &writes);
        contents.unflushed.push((space, writes));
        Ok(())
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let contents = self.lock();
        let Some(tree) = contents.live.get(&space) else {
            return Ok(Vec::new());
        };
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(tree
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, space: Space) -> Result<Option<KeyValue>, StorageError> {
        let contents = self.lock();
        Ok(contents
            .live
            .get(&space)
            .and_then(|t| t.last_key_value())
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn flush(&self) -> Result<usize, StorageError> {
        let mut contents = self.lock();
        let unflushed = std::mem::take(&mut contents.unflushed);
        let mut bytes = 0;
        for (space, writes) in &unflushed {
            bytes += writes
                .iter()
                .map(|w| match w {
                    Write::Put(k, v) => k.len() + v.len(),
                    Write::Delete(k) => k.len(),
                })
                .sum::<usize>();
            apply(&mut contents.durable, *space, writes);
        }
        Ok(bytes)
    }
}
