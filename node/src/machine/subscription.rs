//! A subscription: a durable, named cursor over every partition of a topic.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ConsumerId;
use crate::planted::{self, Bug};

/// How often a message was handed out, and how often that went wrong.
/// `attempts` drives the redelivered flag; `failures` counts only nacks (and
/// later ack timeouts), so leader changes never poison a healthy message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub attempts: u32,
    pub failures: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub consumer: ConsumerId,
    pub counts: Counts,
}

/// One partition's progress within a subscription. Every offset below `next`
/// is exactly one of: acked (below `floor` or in `acked`), in flight, or
/// returned for redelivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    /// Every offset below is acknowledged.
    pub floor: u64,
    /// Acknowledged offsets above the floor.
    pub acked: BTreeSet<u64>,
    /// The next offset never handed out.
    pub next: u64,
    pub in_flight: BTreeMap<u64, InFlight>,
    /// Returned messages, redelivered before any new offset.
    pub returned: BTreeMap<u64, Counts>,
}

/// Where an offset stands within a cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    Acked,
    InFlight,
    Returned,
    NeverDelivered,
}

impl Cursor {
    pub fn starting_at(offset: u64) -> Self {
        Cursor {
            floor: offset,
            next: offset,
            ..Cursor::default()
        }
    }

    pub fn standing(&self, offset: u64) -> Standing {
        if offset < self.floor || self.acked.contains(&offset) {
            Standing::Acked
        } else if self.in_flight.contains_key(&offset) {
            Standing::InFlight
        } else if self.returned.contains_key(&offset) {
            Standing::Returned
        } else {
            Standing::NeverDelivered
        }
    }

    /// Marks `offset` acknowledged; answers the consumer it was in flight
    /// to, if any, so its credit can be refilled.
    pub fn ack(&mut self, offset: u64) -> Option<ConsumerId> {
        let holder = self.in_flight.remove(&offset).map(|f| f.consumer);
        self.returned.remove(&offset);
        if offset >= self.floor {
            self.acked.insert(offset);
        }
        while self.acked.remove(&self.floor) {
            self.floor += 1;
        }
        holder
    }

    /// Moves an in-flight message back to the redelivery set.
    pub fn give_back(&mut self, offset: u64, failed: bool) -> Option<ConsumerId> {
        let flight = self.in_flight.remove(&offset)?;
        let mut counts = flight.counts;
        if failed {
            counts.failures += 1;
        }
        self.returned.insert(offset, counts);
        Some(flight.consumer)
    }

    /// Returns every message in flight to `consumer`, without a failure.
    pub fn release(&mut self, consumer: ConsumerId) {
        let offsets: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.consumer == consumer)
            .map(|(offset, _)| *offset)
            .collect();
        for offset in offsets {
            self.give_back(offset, false);
        }
    }

    /// The next message to hand out: a returned one first (lowest offset),
    /// else the next new offset below `end`, within the dispatch window.
    pub fn take_next(&mut self, end: u64, window: u64) -> Option<(u64, Counts)> {
        if !planted::active(Bug::ReturnedLast) {
            if let Some((offset, counts)) = self.returned.pop_first() {
                return Some((offset, counts));
            }
        }
        if self.next < end && self.next < self.floor.saturating_add(window) {
            self.next += 1;
            return Some((self.next - 1, Counts::default()));
        }
        self.returned.pop_first()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Subscription {
    /// One cursor per partition, by partition index.
    pub cursors: Vec<Cursor>,
    /// Attached consumers; the lowest id is the active one (failover), the
    /// others stand by and take over when it goes.
    pub consumers: BTreeSet<ConsumerId>,
    /// Where dispatch resumes its round over partitions.
    pub next_partition: u32,
}

impl Subscription {
    /// A subscription starting at each partition's first retained offset.
    pub fn at_earliest(bases: impl Iterator<Item = u64>) -> Self {
        Subscription {
            cursors: bases.map(Cursor::starting_at).collect(),
            consumers: BTreeSet::new(),
            next_partition: 0,
        }
    }

    pub fn active_consumer(&self) -> Option<ConsumerId> {
        self.consumers.first().copied()
    }
}
