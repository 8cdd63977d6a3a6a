//! Message bodies, read back from the log. The state machine keeps a
//! record per retained message (`machine::Stored`) that names the log entry
//! holding its body; only the node holding a consumer's session reads the
//! body, when it sends the delivery (ARCHITECTURE.md, "Bodies").
//!
//! Reads go through a cache of recently applied and recently read entries,
//! bounded in bytes, so consumers that keep up never touch the disk and a
//! drain decodes each entry once. On a miss the entry comes from the kept
//! import (entries shipped with an installed snapshot) or the log, and must
//! have the term the record names: the log may still hold, below its purge
//! point, an entry a later leader replaced.
//!
//! A delivery decided before a relocation (`Command::Relocate`) names the
//! body's old place, which may be released before the delivery is sent:
//! the reader remembers where the latest relocations put each body.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::EntryPayload;

use super::decode;
use super::runtime::run_blocking;
use super::typ::Entry;
use crate::machine::{BodyRef, EntryId, Message, NewMessage, Request, Stored};
use crate::planted::{self, Bug};
use crate::storage::{Disk, LogEntry, StorageError};

/// Bytes of message bodies the cache holds at most, by default.
pub const BODY_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Relocated bodies whose new place is remembered, the latest ones: far
/// more than the deliveries a node's sessions hold unsent between a
/// relocation and the release of the entries it freed.
const MOVES_REMEMBERED_MAX: usize = 65_536;

/// Why a retained message's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("log entry {index} (term {term}) holding the body is gone")]
    Missing { index: u64, term: u64 },
    #[error("log entry {index} holds no message at slot {slot}")]
    NoSlot { index: u64, slot: u32 },
    #[error("reading log entry {index}: {reason}")]
    Read { index: u64, reason: String },
}

pub struct Bodies {
    disk: Arc<dyn Disk>,
    /// Entries by index, weighed by their bodies' bytes.
    cache: Mutex<Fifo<u64, Cached>>,
    /// Where relocations put bodies, one each.
    moves: Mutex<Fifo<BodyRef, BodyRef>>,
}

struct Cached {
    term: u64,
    request: Arc<Request>,
}

/// A map bounded by the summed weight of its values, forgetting the
/// oldest insertions first.
struct Fifo<K, V> {
    weight_max: usize,
    entries: HashMap<K, (V, usize)>,
    /// Keys by when they came, oldest first.
    order: VecDeque<K>,
    weight: usize,
}

impl Bodies {
    /// Bodies read from `disk`, with up to `cache_bytes` of them kept.
    pub fn new(disk: Arc<dyn Disk>, cache_bytes: usize) -> Self {
        Bodies {
            disk,
            cache: Mutex::new(Fifo::new(cache_bytes)),
            moves: Mutex::new(Fifo::new(MOVES_REMEMBERED_MAX)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Fifo<u64, Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn moves(&self) -> MutexGuard<'_, Fifo<BodyRef, BodyRef>> {
        self.moves
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps an entry just applied, if it publishes anything: its
    /// messages are the likeliest to be delivered next. Notes where its
    /// relocations put bodies.
    pub fn remember(&self, entry: EntryId, request: Arc<Request>) {
        if request.published().next().is_none() {
            return;
        }
        if request.relocated().next().is_some() {
            self.note_moves(entry, request.relocated());
        }
        self.cache(entry, request);
    }

    /// Keeps `request`, the entry `entry`, in the cache.
    fn cache(&self, entry: EntryId, request: Arc<Request>) {
        let bytes = published_bytes(&request);
        let cached = Cached {
            term: entry.term,
            request,
        };
        self.lock().insert(entry.index, cached, bytes);
    }

    /// Remembers where entry `entry` put the bodies it relocated.
    fn note_moves(&self, entry: EntryId, relocated: impl Iterator<Item = (BodyRef, u32)>) {
        let mut moves = self.moves();
        for (from, slot) in relocated {
            let to = BodyRef {
                index: entry.index,
                term: entry.term,
                slot,
            };
            moves.insert(from, to, 1);
        }
    }

    /// The delivered message for `stored`, the record at (`partition`,
    /// `offset`).
    pub fn message(&self, stored: &Stored, offset: u64) -> Result<Message, BodyError> {
        let assemble = |body: &NewMessage| stored.message(body);
        let mut message = match self.with_body(stored.body(), assemble) {
            Err(missing @ BodyError::Missing { .. }) => {
                let moved = self.moves().get(&stored.body()).copied();
                self.with_body(moved.ok_or(missing)?, assemble)?
            }
            read => read?,
        };
        if planted::active(Bug::CorruptPayload)
            && stored.key().is_none()
            && offset.is_multiple_of(16)
        {
            message.payload = bytes::Bytes::from_static(b"corrupted");
        }
        Ok(message)
    }

    /// The body at `at`, as its entry holds it.
    pub fn body(&self, at: BodyRef) -> Result<NewMessage, BodyError> {
        self.with_body(at, NewMessage::clone)
    }

    /// `f` of the body at `at`, read in place.
    fn with_body<R>(&self, at: BodyRef, f: impl FnOnce(&NewMessage) -> R) -> Result<R, BodyError> {
        let BodyRef { index, term, slot } = at;
        let request = self.request(index, term)?;
        let body = request
            .message(slot)
            .ok_or(BodyError::NoSlot { index, slot })?;
        Ok(f(body))
    }

    /// The request of entry `index`, which must be of `term`.
    fn request(&self, index: u64, term: u64) -> Result<Arc<Request>, BodyError> {
        if let Some(cached) = self.lock().get(&index).filter(|c| c.term == term) {
            return Ok(cached.request.clone());
        }
        let request = run_blocking(|| match of_term(self.disk.imported(index), index, term)? {
            Some(request) => Ok(request),
            None => of_term(self.disk.entry(index), index, term)?
                .ok_or(BodyError::Missing { index, term }),
        })?;
        let request = Arc::new(request);
        self.cache(EntryId { index, term }, request.clone());
        Ok(request)
    }

    /// Forgets every cached entry: a snapshot install replaced the state
    /// the cached entries were applied to.
    pub fn clear(&self) {
        let mut cache = self.lock();
        *cache = Fifo::new(cache.weight_max);
    }
}

/// The request in a log record read at `index`, if it is of `term`.
fn of_term(
    read: Result<Option<LogEntry>, StorageError>,
    index: u64,
    term: u64,
) -> Result<Option<Request>, BodyError> {
    let failed = |reason: String| BodyError::Read { index, reason };
    let Some((_, bytes)) = read.map_err(|e| failed(e.to_string()))? else {
        return Ok(None);
    };
    let entry: Entry = decode(&bytes).map_err(|e| failed(e.to_string()))?;
    match entry.payload {
        EntryPayload::Normal(request) if entry.log_id.leader_id.term == term => Ok(Some(request)),
        _ => Ok(None),
    }
}

/// What an entry's published messages weigh in the cache.
fn published_bytes(request: &Request) -> usize {
    request.published().map(raftmq_rules::message_bytes).sum()
}

impl<K: Copy + Eq + std::hash::Hash, V> Fifo<K, V> {
    fn new(weight_max: usize) -> Self {
        Fifo {
            weight_max,
            entries: HashMap::new(),
            order: VecDeque::new(),
            weight: 0,
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Keeps `value` unless it alone outweighs the bound, forgetting the
    /// oldest until the rest fits. A key kept already keeps its age.
    fn insert(&mut self, key: K, value: V, weight: usize) {
        if weight > self.weight_max {
            return;
        }
        match self.entries.insert(key, (value, weight)) {
            Some((_, old)) => self.weight -= old,
            None => self.order.push_back(key),
        }
        self.weight += weight;
        while self.weight > self.weight_max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, gone)) = self.entries.remove(&oldest) {
                self.weight -= gone;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;
    use crate::machine::{Command, NewMessage};
    use crate::raft::encode;
    use crate::raft::typ::LogId;
    use crate::storage::LocalDisk;

    const MIB: usize = 1024 * 1024;

    /// An entry of term 1 publishing one message of `bytes` payload bytes.
    fn entry(index: u64, bytes: usize) -> (EntryId, Request, Vec<u8>) {
        let request = Request {
            stamp_ms: 0,
            commands: vec![Command::Publish {
                topic: "t".into(),
                messages: vec![NewMessage {
                    key: None,
                    payload: vec![index as u8; bytes].into(),
                    headers: Default::default(),
                    properties: None,
                }],
                producer: None,
            }],
        };
        let raft_entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(request.clone()),
        };
        let encoded = encode(&raft_entry).expect("encode");
        (EntryId { index, term: 1 }, request, encoded)
    }

    fn stored(index: u64, term: u64) -> Stored {
        Stored::new(
            BodyRef {
                index,
                term,
                slot: 0,
            },
            0,
            None,
            0,
            0,
        )
    }

    /// The default cache, crossed: the oldest entries go first, and a body
    /// no longer cached is read back from the log, once.
    #[test]
    fn the_cache_keeps_its_bound_and_misses_read_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Arc::new(LocalDisk::open(dir.path(), MIB as u64).expect("open disk"));
        let bodies = Bodies::new(disk.clone(), BODY_CACHE_BYTES);
        let entries = BODY_CACHE_BYTES / MIB + 8;
        let mut log = Vec::new();
        for index in 1..=entries as u64 {
            let (id, request, encoded) = entry(index, MIB);
            log.push((index, encoded));
            bodies.remember(id, Arc::new(request));
        }
        assert!(bodies.lock().weight <= BODY_CACHE_BYTES);
        assert!(!bodies.lock().entries.contains_key(&1), "the oldest went");
        // Not cached and not in the log: gone.
        assert!(matches!(
            bodies.message(&stored(1, 1), 0),
            Err(BodyError::Missing { index: 1, .. })
        ));
        // Once in the log, read from there and cached again.
        disk.append(log).expect("append");
        let message = bodies.message(&stored(1, 1), 0).expect("read back");
        assert_eq!(message.payload.len(), MIB);
        assert!(bodies.lock().entries.contains_key(&1));
        // A record naming another term never gets this entry's body.
        bodies.clear();
        assert!(matches!(
            bodies.message(&stored(2, 7), 0),
            Err(BodyError::Missing { index: 2, term: 7 })
        ));
    }

    /// A delivery decided before a relocation names the body's old place:
    /// once that entry is gone, the body is read where the relocation put
    /// it, for as many relocated bodies as `MOVES_REMEMBERED_MAX`.
    #[test]
    fn a_body_relocated_and_gone_from_its_old_entry_is_read_at_its_new_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Arc::new(LocalDisk::open(dir.path(), MIB as u64).expect("open disk"));
        let bodies = Bodies::new(disk, 0);
        let (_, old_request, _) = entry(3, 10);
        let body = old_request.message(0).expect("the body").clone();
        let relocation = |index: u64, count: u64| Request {
            stamp_ms: 0,
            commands: vec![Command::Relocate {
                from: (0..count)
                    .map(|i| BodyRef {
                        index: index - 100 + i,
                        term: 1,
                        slot: 0,
                    })
                    .collect(),
                messages: vec![body.clone(); count as usize],
            }],
        };
        // A cache of 0 bytes keeps nothing: every read goes to the disk,
        // where neither entry is, so only the moves answer.
        bodies.remember(
            EntryId {
                index: 103,
                term: 1,
            },
            Arc::new(relocation(103, 1)),
        );
        assert!(matches!(
            bodies.message(&stored(3, 1), 0),
            Err(BodyError::Missing { index: 103, .. })
        ));
        let with_cache = Bodies::new(bodies.disk.clone(), BODY_CACHE_BYTES);
        with_cache.remember(
            EntryId {
                index: 103,
                term: 1,
            },
            Arc::new(relocation(103, 1)),
        );
        let message = with_cache
            .message(&stored(3, 1), 0)
            .expect("read at its new place");
        assert_eq!(message.payload, body.payload);
        // Past the bound, the oldest moves are forgotten.
        let many = MOVES_REMEMBERED_MAX as u64;
        with_cache.remember(
            EntryId {
                index: 200,
                term: 1,
            },
            Arc::new(Request {
                stamp_ms: 0,
                commands: vec![Command::Relocate {
                    from: (0..many)
                        .map(|i| BodyRef {
                            index: 1_000 + i,
                            term: 1,
                            slot: 0,
                        })
                        .collect(),
                    messages: vec![body.clone(); many as usize],
                }],
            }),
        );
        assert_eq!(with_cache.moves().entries.len(), MOVES_REMEMBERED_MAX);
        assert!(matches!(
            with_cache.message(&stored(3, 1), 0),
            Err(BodyError::Missing { index: 3, .. })
        ));
    }
}
