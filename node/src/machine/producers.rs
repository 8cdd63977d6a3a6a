//! Idempotent producers: a producer id and a sequence number per message
//! make a retried publish land once, and make a publish that skipped ahead
//! of a lost one wait for it, so a producer's order survives failovers.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::limits::{PRODUCERS_PER_TOPIC_MAX, PRODUCER_POSITIONS_MAX};
use super::quirks::{self, Quirk};
use super::rejection::Rejection;

/// Who published: a producer id (never 0) and the sequence number of the
/// batch's first message; message i has `sequence + i`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerTag {
    pub id: u64,
    pub sequence: u64,
}

/// A batch remembered so that its retry is answered with its positions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Batch {
    first: u64,
    positions: Vec<(u32, u64)>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
struct Producer {
    /// The sequence number the next new message must carry.
    next: u64,
    recent: VecDeque<Batch>,
    /// Positions held in `recent`, bounded by PRODUCER_POSITIONS_MAX.
    positions: usize,
    last_seen_ms: u64,
}

/// What to do with a tagged batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New messages: store them, then `record`.
    Store,
    /// Stored before: answer these positions again, store nothing.
    Repeat(Vec<(u32, u64)>),
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Producers {
    by_id: BTreeMap<u64, Producer>,
}

impl Producers {
    /// Judges a batch of `count` messages: new, a repeat, or out of order
    /// (a gap: an earlier batch of this producer is missing).
    pub fn judge(&self, tag: ProducerTag, count: usize) -> Result<Verdict, Rejection> {
        let Some(producer) = self.by_id.get(&tag.id) else {
            return Ok(Verdict::Store); // a new (or forgotten) producer starts anywhere
        };
        let end = tag.sequence.saturating_add(count as u64);
        if tag.sequence == producer.next || quirks::on(Quirk::StoreRepeats) {
            return Ok(Verdict::Store);
        }
        if tag.sequence > producer.next || end > producer.next {
            return Err(Rejection::OutOfOrder {
                producer: tag.id,
                expected: producer.next,
                got: tag.sequence,
            });
        }
        producer
            .recent
            .iter()
            .find(|b| b.first == tag.sequence && b.positions.len() == count)
            .map(|b| Verdict::Repeat(b.positions.clone()))
            .ok_or(Rejection::RepeatForgotten {
                producer: tag.id,
                sequence: tag.sequence,
            })
    }

    /// Remembers a stored batch, forgetting the oldest batches past the
    /// bounds and, past the producer bound, the longest idle producer.
    pub fn record(&mut self, tag: ProducerTag, positions: Vec<(u32, u64)>, now_ms: u64) {
        if !self.by_id.contains_key(&tag.id) && self.by_id.len() >= PRODUCERS_PER_TOPIC_MAX {
            let idle = self
                .by_id
                .iter()
                .min_by_key(|(id, p)| (p.last_seen_ms, **id))
                .map(|(id, _)| *id);
            if let Some(idle) = idle {
                self.by_id.remove(&idle);
            }
        }
        let producer = self.by_id.entry(tag.id).or_default();
        producer.next = tag.sequence.saturating_add(positions.len() as u64);
        producer.last_seen_ms = now_ms;
        producer.positions += positions.len();
        producer.recent.push_back(Batch {
            first: tag.sequence,
            positions,
        });
        while producer.positions > PRODUCER_POSITIONS_MAX && producer.recent.len() > 1 {
            if let Some(old) = producer.recent.pop_front() {
                producer.positions -= old.positions.len();
            }
        }
    }
}
