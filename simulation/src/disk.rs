//! The disk seam under simulation: an in-memory store that keeps what was
//! flushed and, on a crash, loses a random tail of what was not (or all of
//! it, when the fault injector asks for the worst case).
//!
//! The log is modelled a record at a time: purging hides records, and
//! releasing deletes every purged record below the floor it is given,
//! where the production log deletes whole segments and keeps the newest.
//! Releasing here is therefore never later than there, so a body read too
//! early shows up here first. Imports (entries shipped with a snapshot)
//! are durable on return, as in production; what is being received is
//! forgotten in a crash.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use raftmq_node::storage::{Disk, LogEntry, SnapshotData, StorageError, WriteSnapshot};
use rand::Rng;

#[derive(Clone, Default)]
struct Image {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every log record on disk, purged or not.
    log: BTreeMap<u64, Vec<u8>>,
    /// Records below are purged: hidden from `entries` and `last_entry`.
    /// Not durable: a restart purges again from the recorded point.
    purged_below: u64,
    /// The snapshot's meta and data.
    snapshot: Option<(Vec<u8>, Vec<u8>)>,
}

impl Image {
    /// The log as openraft sees it: the records from the purge point.
    fn visible(&self) -> std::collections::btree_map::Range<'_, u64, Vec<u8>> {
        self.log.range(self.purged_below..)
    }
}

/// Entries shipped with snapshots, by snapshot id.
#[derive(Default)]
struct Imports {
    all: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
    /// The one `imported` reads.
    kept: Option<String>,
    /// The one being received: its id, first index, and whether sealed.
    receiving: Option<(String, u64, bool)>,
}

#[derive(Default)]
struct Contents {
    /// What reads see.
    live: Image,
    /// What survives a crash.
    durable: Image,
    /// Records put since the last flush, oldest first.
    unflushed: Vec<(Vec<u8>, Vec<u8>)>,
    imports: Imports,
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
        contents.imports.receiving = None;
        contents.live = contents.durable.clone();
        contents.live.purged_below = 0;
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

    /// Durable on return, with the production log's rule on indexes: a
    /// log with nothing visible starts over at any index.
    fn append(&self, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let Some(&(first, _)) = entries.first() else {
            return Ok(());
        };
        let mut contents = self.lock();
        let next = contents.live.log.last_key_value().map(|(i, _)| i + 1);
        if contents.live.visible().next().is_none() {
            if next != Some(first) {
                // The production log deletes every segment durably before
                // it starts over at a new index.
                contents.live.log.clear();
                contents.durable.log.clear();
                contents.live.purged_below = first;
            }
        } else if next != Some(first) {
            return Err(StorageError::LogGap {
                index: first,
                last: next.map_or(0, |n| n - 1),
            });
        }
        for (n, (index, _)) in entries.iter().enumerate() {
            if *index != first + n as u64 {
                return Err(StorageError::LogGap {
                    index: *index,
                    last: first + n as u64 - 1,
                });
            }
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
            .visible()
            .take_while(|(index, _)| **index < to)
            .filter(|(index, _)| **index >= from)
            .map(|(index, bytes)| (*index, bytes.clone()))
            .collect())
    }

    fn last_entry(&self) -> Result<Option<LogEntry>, StorageError> {
        let contents = self.lock();
        Ok(contents
            .live
            .visible()
            .next_back()
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
        let live = &mut contents.live;
        live.purged_below = live.purged_below.max(upto.saturating_add(1));
        Ok(())
    }

    /// Durable on return, record by record.
    fn release(&self, below: u64) -> Result<(), StorageError> {
        let mut contents = self.lock();
        let below = below.min(contents.live.purged_below);
        let Contents {
            live,
            durable,
            imports,
            ..
        } = &mut *contents;
        for image in [live, durable] {
            image.log = image.log.split_off(&below);
        }
        if let Some(kept) = imports.kept.as_ref().and_then(|id| imports.all.get_mut(id)) {
            *kept = kept.split_off(&below);
        }
        Ok(())
    }

    fn log_bytes_before(&self, below: u64) -> u64 {
        let contents = self.lock();
        let imports = &contents.imports;
        let kept = imports.kept.as_ref().and_then(|id| imports.all.get(id));
        [Some(&contents.live.log), kept]
            .into_iter()
            .flatten()
            .flat_map(|records| records.range(..below))
            .map(|(_, bytes)| bytes.len() as u64)
            .sum()
    }

    fn entry(&self, index: u64) -> Result<Option<LogEntry>, StorageError> {
        let contents = self.lock();
        Ok(contents
            .live
            .log
            .get(&index)
            .map(|bytes| (index, bytes.clone())))
    }

    /// The production rule: a batch follows the one before or starts the
    /// import over at its first index; late writes to a sealed or kept
    /// import are ignored.
    fn import(&self, id: &str, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let Some(&(first, _)) = entries.first() else {
            return Ok(());
        };
        let imports = &mut self.lock().imports;
        if imports.kept.as_deref() == Some(id) {
            return Ok(());
        }
        let restart = match &imports.receiving {
            Some((receiving, _, true)) if receiving == id => return Ok(()),
            Some((receiving, start, _)) if receiving == id => first == *start,
            _ => true,
        };
        if restart {
            imports.receiving = Some((id.to_string(), first, false));
            imports.all.insert(id.to_string(), BTreeMap::new());
        }
        let import = imports.all.entry(id.to_string()).or_default();
        let next = import.last_key_value().map(|(i, _)| i + 1);
        if !restart && next != Some(first) {
            return Err(StorageError::LogGap {
                index: first,
                last: next.map_or(0, |n| n - 1),
            });
        }
        import.extend(entries);
        Ok(())
    }

    fn seal_import(&self, id: &str, from: u64, to: u64) -> bool {
        if from > to {
            return true;
        }
        let imports = &mut self.lock().imports;
        if imports.kept.as_deref() == Some(id) {
            return true;
        }
        let whole = imports.all.get(id).is_some_and(|import| {
            import
                .first_key_value()
                .is_some_and(|(first, _)| *first <= from)
                && import.last_key_value().is_some_and(|(last, _)| *last >= to)
        });
        match &mut imports.receiving {
            Some((receiving, _, sealed)) if receiving == id => {
                *sealed |= whole;
                whole
            }
            _ => false,
        }
    }

    fn keep_import(&self, id: &str) -> Result<(), StorageError> {
        let imports = &mut self.lock().imports;
        let sealed_now = matches!(&imports.receiving, Some((r, _, true)) if r == id);
        let received_before = imports.receiving.is_none() && imports.all.contains_key(id);
        if sealed_now || received_before {
            imports.kept = Some(id.to_string());
        }
        imports.receiving = None;
        let kept = imports.kept.clone();
        imports.all.retain(|name, _| Some(name) == kept.as_ref());
        Ok(())
    }

    fn imported(&self, index: u64) -> Result<Option<LogEntry>, StorageError> {
        let imports = &self.lock().imports;
        let kept = imports.kept.as_ref().and_then(|id| imports.all.get(id));
        Ok(kept
            .and_then(|import| import.get(&index))
            .map(|bytes| (index, bytes.clone())))
    }

    fn save_snapshot(&self, meta: &[u8], data: WriteSnapshot<'_>) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        data(&mut bytes)?;
        let mut contents = self.lock();
        let snapshot = (meta.to_vec(), bytes);
        contents.live.snapshot = Some(snapshot.clone());
        contents.durable.snapshot = Some(snapshot);
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(Vec<u8>, SnapshotData)>, StorageError> {
        let snapshot = self.lock().live.snapshot.clone();
        Ok(snapshot.map(|(meta, data)| (meta, SnapshotData::Memory(std::io::Cursor::new(data)))))
    }

    /// In memory, where openraft holds it: a crash forgets it.
    fn receive_snapshot(&self) -> Result<SnapshotData, StorageError> {
        Ok(SnapshotData::Memory(Default::default()))
    }

    fn is_empty(&self) -> Result<bool, StorageError> {
        let live = &self.lock().live;
        Ok(live.records.is_empty() && live.visible().next().is_none() && live.snapshot.is_none())
    }
}
