//! A subscription: a durable, named cursor over every partition of a topic,
//! with the mode that decides how its consumers share the messages.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ids::ConsumerId;

/// How a subscription's consumers share its messages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// One consumer at a time; a second one is refused.
    Exclusive,
    /// One active consumer (the oldest); the others stand by and take over,
    /// returned messages first, when it goes. Strict order per partition.
    #[default]
    Failover,
    /// Every consumer gets messages, round robin: a work queue. No order.
    Shared,
    /// Every consumer gets messages; all messages of one key go to one
    /// consumer at a time, in offset order. Keyless messages go round robin.
    KeyShared,
}

/// Settings fixed when a subscription is created.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionConfig {
    pub mode: Mode,
    /// A message in flight this long without an ack returns, counting a
    /// failure. 0: no timeout.
    pub ack_timeout_ms: u64,
    /// Failures (nacks, ack timeouts) after which a message goes to the
    /// dead-letter topic. 0: unlimited. Needs `dead_letter_topic`.
    pub max_deliveries: u32,
    /// Where rejected and over-delivered messages go.
    pub dead_letter_topic: Option<String>,
    /// Where a new subscription starts.
    pub start: Start,
}

/// Where a new subscription starts reading.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// The first retained message of each partition.
    #[default]
    Earliest,
    /// After the last message published so far: only what comes next.
    Latest,
}

/// How often a message was handed out, and how often that went wrong.
/// `attempts` drives the redelivered flag; `failures` counts only nacks and
/// ack timeouts, so leader changes never poison a healthy message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub attempts: u32,
    pub failures: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub consumer: ConsumerId,
    pub counts: Counts,
    pub key: Option<Bytes>,
    /// When the ack timeout returns it, if the subscription has one.
    pub deadline_ms: Option<u64>,
}

/// A message waiting for redelivery.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returned {
    pub counts: Counts,
    /// Not handed out before this time (a delayed nack).
    pub not_before_ms: u64,
}

/// The consumer holding in-flight messages of a key, and how many.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub consumer: ConsumerId,
    pub count: u32,
}

/// One partition's progress within a subscription. Every offset below `next`
/// is exactly one of: acked (below `floor` or in `acked`), in flight, or
/// returned; offsets at or above `next` may be handed out ahead of it
/// (key-shared look-ahead).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    /// Every offset below is acknowledged.
    pub floor: u64,
    /// Acknowledged offsets above the floor.
    pub acked: BTreeSet<u64>,
    /// The lowest offset never handed out.
    pub next: u64,
    pub in_flight: BTreeMap<u64, InFlight>,
    /// Returned messages, redelivered before any new offset.
    pub returned: BTreeMap<u64, Returned>,
    /// Keys with messages in flight, and to whom.
    pub held_keys: BTreeMap<Bytes, Holder>,
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

    /// Records `offset` as handed to `flight.consumer`.
    pub fn hand_out(&mut self, offset: u64, flight: InFlight) {
        self.returned.remove(&offset);
        if let Some(key) = &flight.key {
            let holder = self.held_keys.entry(key.clone()).or_insert(Holder {
                consumer: flight.consumer,
                count: 0,
            });
            holder.count += 1;
        }
        self.in_flight.insert(offset, flight);
        self.advance_next();
    }

    /// Moves `next` up to the lowest offset never handed out.
    fn advance_next(&mut self) {
        self.next = self.next.max(self.floor);
        while self.standing(self.next) != Standing::NeverDelivered {
            self.next += 1;
        }
    }

    /// Takes `offset` out of flight, releasing its key.
    fn land(&mut self, offset: u64) -> Option<InFlight> {
        let flight = self.in_flight.remove(&offset)?;
        if let Some(key) = &flight.key {
            if let Some(holder) = self.held_keys.get_mut(key) {
                holder.count -= 1;
                if holder.count == 0 {
                    self.held_keys.remove(key);
                }
            }
        }
        Some(flight)
    }

    /// Marks `offset` acknowledged; answers the consumer it was in flight
    /// to, if any, so its credit can be refilled.
    pub fn ack(&mut self, offset: u64) -> Option<ConsumerId> {
        let holder = self.land(offset).map(|f| f.consumer);
        self.returned.remove(&offset);
        if offset >= self.floor {
            self.acked.insert(offset);
        }
        while self.acked.remove(&self.floor) {
            self.floor += 1;
        }
        self.advance_next();
        holder
    }

    /// Moves an in-flight message back to the redelivery set, counting a
    /// failure if `failed`; answers its holder and its counts.
    pub fn give_back(
        &mut self,
        offset: u64,
        failed: bool,
        not_before_ms: u64,
    ) -> Option<(ConsumerId, Counts)> {
        let flight = self.land(offset)?;
        let mut counts = flight.counts;
        counts.failures += u32::from(failed);
        self.returned.insert(
            offset,
            Returned {
                counts,
                not_before_ms,
            },
        );
        Some((flight.consumer, counts))
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
            self.give_back(offset, false, 0);
        }
    }

    /// In-flight offsets whose ack deadline has passed at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.in_flight
            .iter()
            .filter(|(_, f)| f.deadline_ms.is_some_and(|d| d <= now_ms))
            .map(|(offset, _)| *offset)
            .collect()
    }

    /// The earliest time after `now_ms` something here becomes due: an ack
    /// deadline or a delayed redelivery.
    pub fn next_deadline(&self, now_ms: u64) -> Option<u64> {
        let deadlines = self.in_flight.values().filter_map(|f| f.deadline_ms);
        let delays = self
            .returned
            .values()
            .map(|r| r.not_before_ms)
            .filter(|t| *t > now_ms);
        deadlines.chain(delays).min()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Subscription {
    pub config: SubscriptionConfig,
    /// One cursor per partition, by partition index.
    pub cursors: Vec<Cursor>,
    /// Attached consumers, oldest first.
    pub consumers: BTreeSet<ConsumerId>,
    /// Where dispatch resumes its round over partitions.
    pub next_partition: u32,
    /// Round-robin counter over consumers (shared modes).
    pub next_consumer: u64,
}

impl Subscription {
    /// A subscription starting at these offsets, one per partition.
    pub fn starting_at(config: SubscriptionConfig, offsets: impl Iterator<Item = u64>) -> Self {
        Subscription {
            config,
            cursors: offsets.map(Cursor::starting_at).collect(),
            consumers: BTreeSet::new(),
            next_partition: 0,
            next_consumer: 0,
        }
    }
}
