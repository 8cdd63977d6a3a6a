//! openraft's state machine adapter: applies entries to the pure
//! `machine::State`, hands the effects to an `EffectSink`, and keeps the
//! latest snapshot on the `Disk`.
//!
//! The whole state lives in memory; a snapshot is the serialized state with
//! the last applied log id and membership. A restarted node loads its last
//! snapshot and openraft re-applies the log after it, so applying and
//! recording the last applied id can never disagree.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::runtime::run_blocking;
use super::typ::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership};
use super::{decode, encode, Response, TypeConfig};
use crate::clock::Clock;
use crate::machine::{Effect, State};
use crate::planted::{self, Bug};
use crate::storage::Disk;

/// Receives the effects of applied entries. Called on the apply path: it
/// must not block.
pub trait EffectSink: Send + Sync + 'static {
    fn effects(&self, effects: Vec<Effect>);

    /// A snapshot replaced the state: the effects of the entries it covers
    /// never came, so whatever they would have closed is closed now.
    fn snapshot_installed(&self);
}

/// Everything a snapshot restores.
#[derive(Serialize, Deserialize, Clone, Default)]
struct Applied {
    state: State,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachineStore {
    applied: Arc<Mutex<Applied>>,
    disk: Arc<dyn Disk>,
    sink: Arc<dyn EffectSink>,
    /// Read only by the planted bug that stamps entries with this replica's
    /// own clock.
    clock: Arc<dyn Clock>,
    /// The size of the latest snapshot's data: when to take the next one
    /// depends on it (`snapshots.rs`).
    snapshot_bytes: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Restores the last snapshot on `disk`, if any.
    pub fn open(
        disk: Arc<dyn Disk>,
        sink: Arc<dyn EffectSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        let stored = load_snapshot(disk.as_ref())?;
        let applied = match &stored {
            Some(stored) => {
                decode(&stored.data).map_err(|e| StorageIOError::read_snapshot(None, &e))?
            }
            None => Applied::default(),
        };
        let snapshot_bytes = stored.map_or(0, |stored| stored.data.len() as u64);
        Ok(StateMachineStore {
            applied: Arc::new(Mutex::new(applied)),
            disk,
            sink,
            clock,
            snapshot_bytes: Arc::new(AtomicU64::new(snapshot_bytes)),
        })
    }

    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes.load(Ordering::Relaxed)
    }

    /// The log index the state reflects: the last entry applied, or the
    /// snapshot restored.
    pub fn applied_index(&self) -> Option<u64> {
        self.lock().last_applied.map(|id| id.index)
    }

    /// Reads the current state (for queries such as listing topics).
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock().state)
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        // A panic while applying leaves no half-applied entry behind that a
        // later reader could trust less than a crash: keep serving.
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Meta and data go to the disk apart, so a large state is never
    /// copied into one buffer with its meta.
    fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let signature = Some(stored.meta.signature());
        let meta = encode(&stored.meta)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        self.disk
            .save_snapshot(&meta, &stored.data)
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        self.snapshot_bytes
            .store(stored.data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn load_snapshot(disk: &dyn Disk) -> Result<Option<StoredSnapshot>, StorageError> {
    let Some((meta, data)) = disk
        .load_snapshot()
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?
    else {
        return Ok(None);
    };
    let meta = decode(&meta).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
    Ok(Some(StoredSnapshot { meta, data }))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // Copy under the lock, serialize outside it: message bodies are
        // reference-counted, so the copy is cheap, and applying goes on
        // while a large state is encoded and synced.
        let applied = self.lock().clone();
        run_blocking(|| {
            let data = encode(&applied).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, data.len()),
                None => format!("empty-{}", data.len()),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership,
                snapshot_id,
            };
            let stored = StoredSnapshot { meta, data };
            self.save_snapshot(&stored)?;
            Ok(Snapshot {
                meta: stored.meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            })
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.lock();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut effects = Vec::new();
        let responses = {
            let mut applied = self.lock();
            entries
                .into_iter()
                .map(|entry| {
                    applied.last_applied = Some(entry.log_id);
                    match entry.payload {
                        EntryPayload::Blank => Vec::new(),
                        EntryPayload::Normal(mut request) => {
                            if planted::active(Bug::LocalClockInApply) {
                                request.stamp_ms = self.clock.now_ms();
                            }
                            applied
                                .state
                                .apply(entry.log_id.index, request, &mut effects)
                        }
                        EntryPayload::Membership(membership) => {
                            applied.membership =
                                StoredMembership::new(Some(entry.log_id), membership);
                            Vec::new()
                        }
                    }
                })
                .collect()
        };
        if !effects.is_empty() {
            self.sink.effects(effects);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let mut data = snapshot.into_inner();
        if planted::active(Bug::StaleSnapshotInstall) {
            if let Some(own) = run_blocking(|| load_snapshot(self.disk.as_ref()))? {
                data = own.data;
            }
        }
        let restored: Applied = run_blocking(|| {
            let restored = decode(&data)
                .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
            self.save_snapshot(&StoredSnapshot {
                meta: meta.clone(),
                data,
            })?;
            Ok::<_, StorageError>(restored)
        })?;
        *self.lock() = restored;
        self.sink.snapshot_installed();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(
            run_blocking(|| load_snapshot(self.disk.as_ref()))?.map(|stored| Snapshot {
                meta: stored.meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            }),
        )
    }
}
