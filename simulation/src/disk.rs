//! The disk seam under simulation: an in-memory store that keeps what was
//! flushed and, on a crash, loses a random tail of what was not (or all of
//! it, when the fault injector asks for the worst case).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use raftmq_node::storage::{Disk, LogEntry, SnapshotBytes, StorageError};
use rand::Rng;

#[derive(Clone, Default)]
struct Image {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    log: BTreeMap<u64, Vec<u8>>,
    snapshot: Option<SnapshotBytes>,
}

#[derive(Default)]
struct Contents {
    /// What reads see.
    live: Image,
    /// What survives a crash.
    durable: Image,
    /// Records put since the last flush, oldest first.
    unflushed: Vec<(Vec<u8>, Vec<u8>)>,
    /// The last purge point not yet known to be durable: like deleted
    /// segment files, a crash may bring the purged entries back.
    unsynced_purge: Option<u64>,
    /// Log entries appended since the records were last made durable (by
    /// a flush, or as far as a crash kept them).
    appended_since_flush: u64,
}

/// What a crash keeps of the records put since the last flush.
#[derive(Clone, Copy, Debug)]
pub enum Unflushed {
    /// A random prefix of them reached the platter.
    RandomPrefix,
    /// None did: the records are as the last flush left them, the worst
    /// case for a restart, which re-applies from the commit point they hold.
    Lost,
}

#[derive(Default)]
pub struct SimDisk {
    contents: Mutex<Contents>,
}

fn purge(log: &mut BTreeMap<u64, Vec<u8>>, upto: u64) {
    *log = log.split_off(&upto.saturating_add(1));
}

impl SimDisk {
    fn lock(&self) -> MutexGuard<'_, Contents> {
        self.contents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A power failure: of the records put since the last flush, what
    /// `keep` says reached the platter and the rest is gone; an unsynced
    /// purge may be undone. Answers how many records were lost.
    pub fn crash(&self, keep: Unflushed, rng: &mut impl Rng) -> usize {
        let mut contents = self.lock();
        contents.appended_since_flush = 0;
        let unflushed = std::mem::take(&mut contents.unflushed);
        let kept = match keep {
            Unflushed::RandomPrefix => rng.gen_range(0..=unflushed.len()),
            Unflushed::Lost => 0,
        };
        for (key, value) in &unflushed[..kept] {
            contents.durable.records.insert(key.clone(), value.clone());
        }
        if let Some(upto) = contents.unsynced_purge.take() {
            if rng.gen_bool(0.5) {
                purge(&mut contents.durable.log, upto);
            }
        }
        contents.live = contents.durable.clone();
        unflushed.len() - kept
    }

    /// Log entries appended since the records were last made durable: a
    /// crash that loses every unflushed record leaves the durable commit
    /// point at least this far behind the log.
    pub fn appended_since_flush(&self) -> u64 {
        self.lock().appended_since_flush
    }
}

impl Disk for SimDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().live.records.get(key).cloned())
    }

    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), StorageError> {
        let mut contents = self.lock();
        contents.live.records.insert(key.to_vec(), value.clone());
        contents.unflushed.push((key.to_vec(), value));
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        let mut contents = self.lock();
        for (key, value) in std::mem::take(&mut contents.unflushed) {
            contents.durable.records.insert(key, value);
        }
        contents.appended_since_flush = 0;
        Ok(())
    }

    /// Durable on return, with the production log's rule on indexes.
    fn append(&self, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let mut contents = self.lock();
        let mut expected = contents.live.log.last_key_value().map(|(i, _)| i + 1);
        for (index, _) in &entries {
            if let Some(next) = expected.filter(|next| next != index) {
                return Err(StorageError::LogGap {
                    index: *index,
                    last: next - 1,
                });
            }
            expected = Some(index + 1);
        }
        if contents.live.log.is_empty() {
            // The production log deletes its purged segments durably
            // before it starts over at a new index.
            contents.durable.log.clear();
            contents.unsynced_purge = None;
        }
        contents.appended_since_flush += entries.len() as u64;
        for (index, bytes) in entries {
            contents.live.log.insert(index, bytes.clone());
            contents.durable.log.insert(index, bytes);
        }
        Ok(())
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let contents = self.lock();
        Ok(contents
            .live
            .log
            .range(from..to)
            .map(|(index, bytes)| (*index, bytes.clone()))
            .collect())
    }

    fn last_entry(&self) -> Result<Option<LogEntry>, StorageError> {
        let contents = self.lock();
        Ok(contents
            .live
            .log
            .last_key_value()
            .map(|(index, bytes)| (*index, bytes.clone())))
    }

    fn truncate(&self, from: u64) -> Result<(), StorageError> {
        let mut contents = self.lock();
        contents.live.log.split_off(&from);
        contents.durable.log.split_off(&from);
        Ok(())
    }

    fn purge(&self, upto: u64) -> Result<(), StorageError> {
        let mut contents = self.lock();
        purge(&mut contents.live.log, upto);
        contents.unsynced_purge = Some(upto);
        Ok(())
    }

    fn save_snapshot(&self, meta: &[u8], data: &[u8]) -> Result<(), StorageError> {
        let mut contents = self.lock();
        let snapshot = (meta.to_vec(), data.to_vec());
        contents.live.snapshot = Some(snapshot.clone());
        contents.durable.snapshot = Some(snapshot);
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<SnapshotBytes>, StorageError> {
        Ok(self.lock().live.snapshot.clone())
    }

    fn is_empty(&self) -> Result<bool, StorageError> {
        let live = &self.lock().live;
        Ok(live.records.is_empty() && live.log.is_empty() && live.snapshot.is_none())
    }
}
