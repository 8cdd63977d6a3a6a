//! A subscription: a durable, named cursor over every partition of a topic,
//! with the mode that decides how its consumers share the messages.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::deadlines::{CursorDeadlines, Due};
use super::ids::{ConsumerId, KeyHash};

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
    /// Where rejected, over-delivered, expired and dropped messages go.
    pub dead_letter_topic: Option<String>,
    /// Or: the exchange that routes them (RabbitMQ's
    /// `x-dead-letter-exchange`), by `dead_letter_routing_key`, else by
    /// the name of the topic they left.
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// Where a new subscription starts.
    pub start: Start,
}

/// Where a new subscription starts reading, in each partition (a replay,
/// when it starts before the end).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// The first retained message.
    #[default]
    Earliest,
    /// After the last message published so far: only what comes next.
    Latest,
    /// This offset, or the nearest retained one.
    Offset(u64),
    /// The first message published at or after this time (ms since the
    /// epoch, the state machine's clock).
    Time(u64),
}

/// Messages a subscription handed out and settled since it was created.
/// Counted in the state, so every replica reports the same totals and a
/// restart does not reset them; rates are their differences over time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries, redeliveries included.
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Messages that left for a dead-letter topic or were dropped as
    /// rejected, delivered too often or pushed out by overflow.
    pub dead_lettered: u64,
    /// Messages whose time to live ran out before an ack.
    pub expired: u64,
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
    pub key: Option<KeyHash>,
    /// When the ack timeout returns it, if the subscription has one.
    pub deadline_ms: Option<u64>,
}

/// A message waiting for redelivery.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returned {
    pub counts: Counts,
    /// Not handed out before this time (a delayed nack); 0 for no delay,
    /// and once the tick at its time ended the delay, so that a delay still
    /// to serve is exactly a not-before above 0.
    pub not_before_ms: u64,
}

impl Returned {
    /// When its delay ends, if it still has one to serve.
    fn delay_ends_ms(&self) -> Option<u64> {
        (self.not_before_ms > 0).then_some(self.not_before_ms)
    }
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
    pub held_keys: BTreeMap<KeyHash, Holder>,
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
    pub fn hand_out(&mut self, offset: u64, flight: InFlight, deadlines: &mut CursorDeadlines<'_>) {
        self.take_returned(offset, deadlines);
        if let Some(key) = &flight.key {
            let holder = self.held_keys.entry(*key).or_insert(Holder {
                consumer: flight.consumer,
                count: 0,
            });
            holder.count += 1;
        }
        if let Some(at_ms) = flight.deadline_ms {
            deadlines.set(at_ms, Due::AckTimeout, offset);
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

    /// Takes `offset` out of flight, releasing its key and its deadline.
    fn land(&mut self, offset: u64, deadlines: &mut CursorDeadlines<'_>) -> Option<InFlight> {
        let flight = self.in_flight.remove(&offset)?;
        if let Some(at_ms) = flight.deadline_ms {
            deadlines.clear(at_ms, Due::AckTimeout, offset);
        }
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

    /// Puts `offset` in the redelivery set, with its delay if it has one.
    fn put_returned(
        &mut self,
        offset: u64,
        returned: Returned,
        deadlines: &mut CursorDeadlines<'_>,
    ) {
        if let Some(at_ms) = returned.delay_ends_ms() {
            deadlines.set(at_ms, Due::Redelivery, offset);
        }
        self.returned.insert(offset, returned);
    }

    /// Takes `offset` out of the redelivery set, with its delay.
    fn take_returned(
        &mut self,
        offset: u64,
        deadlines: &mut CursorDeadlines<'_>,
    ) -> Option<Returned> {
        let returned = self.returned.remove(&offset)?;
        if let Some(at_ms) = returned.delay_ends_ms() {
            deadlines.clear(at_ms, Due::Redelivery, offset);
        }
        Some(returned)
    }

    /// Marks `offset` acknowledged; answers the consumer it was in flight
    /// to, if any, so its credit can be refilled.
    pub fn ack(&mut self, offset: u64, deadlines: &mut CursorDeadlines<'_>) -> Option<ConsumerId> {
        let holder = self.land(offset, deadlines).map(|f| f.consumer);
        self.take_returned(offset, deadlines);
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
    /// failure if `failed`, not to go out again before `not_before_ms` (0:
    /// no delay); answers its holder and its counts.
    pub fn give_back(
        &mut self,
        offset: u64,
        failed: bool,
        not_before_ms: u64,
        deadlines: &mut CursorDeadlines<'_>,
    ) -> Option<(ConsumerId, Counts)> {
        let flight = self.land(offset, deadlines)?;
        let mut counts = flight.counts;
        counts.failures += u32::from(failed);
        let returned = Returned {
            counts,
            not_before_ms,
        };
        self.put_returned(offset, returned, deadlines);
        Some((flight.consumer, counts))
    }

    /// Forgets every offset below `offset`, which its topic dropped (a
    /// drop-head topic past its limits): as if acknowledged. Answers the
    /// consumer of each one that was in flight, for its credit.
    pub fn skip_to(&mut self, offset: u64, deadlines: &mut CursorDeadlines<'_>) -> Vec<ConsumerId> {
        let in_flight: Vec<u64> = self.in_flight.range(..offset).map(|(o, _)| *o).collect();
        let freed = in_flight
            .into_iter()
            .filter_map(|o| self.land(o, deadlines))
            .map(|flight| flight.consumer)
            .collect();
        let returned: Vec<u64> = self.returned.range(..offset).map(|(o, _)| *o).collect();
        for o in returned {
            self.take_returned(o, deadlines);
        }
        self.acked = self.acked.split_off(&offset);
        self.floor = self.floor.max(offset);
        while self.acked.remove(&self.floor) {
            self.floor += 1;
        }
        self.advance_next();
        freed
    }

    /// Whether `offset` waits among the returned messages without ever
    /// having been handed out: deferred for its delay.
    pub fn deferred(&self, offset: u64) -> bool {
        self.returned
            .get(&offset)
            .is_some_and(|r| r.counts.attempts == 0)
    }

    /// Holds back a message never handed out until `due_ms`, when it was
    /// published delayed: from here on it waits as a returned message
    /// does, so `next` moves past it.
    pub fn defer(&mut self, offset: u64, due_ms: u64, deadlines: &mut CursorDeadlines<'_>) {
        let returned = Returned {
            counts: Counts::default(),
            not_before_ms: due_ms,
        };
        self.put_returned(offset, returned, deadlines);
        self.advance_next();
    }

    /// Ends a returned message's delay, now that its time came: from now on
    /// only credit holds it back.
    pub fn end_delay(&mut self, offset: u64, deadlines: &mut CursorDeadlines<'_>) {
        let Some(returned) = self.returned.get_mut(&offset) else {
            return;
        };
        if let Some(at_ms) = returned.delay_ends_ms() {
            deadlines.clear(at_ms, Due::Redelivery, offset);
            returned.not_before_ms = 0;
        }
    }

    /// Returns every message in flight to `consumer`, without a failure.
    pub fn release(&mut self, consumer: ConsumerId, deadlines: &mut CursorDeadlines<'_>) {
        let offsets: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.consumer == consumer)
            .map(|(offset, _)| *offset)
            .collect();
        for offset in offsets {
            self.give_back(offset, false, 0, deadlines);
        }
    }

    /// The deadlines this cursor implies, as (time, what, offset): every
    /// ack deadline, and every delay still to serve. What the state's
    /// deadline index must hold of it.
    pub fn deadlines(&self) -> impl Iterator<Item = (u64, Due, u64)> + '_ {
        let timeouts = self
            .in_flight
            .iter()
            .filter_map(|(offset, f)| Some((f.deadline_ms?, Due::AckTimeout, *offset)));
        let delays = self
            .returned
            .iter()
            .filter_map(|(offset, r)| Some((r.delay_ends_ms()?, Due::Redelivery, *offset)));
        timeouts.chain(delays)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Subscription {
    pub config: SubscriptionConfig,
    /// What it has done since it was created (metrics).
    pub tally: Tally,
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
            tally: Tally::default(),
            cursors: offsets.map(Cursor::starting_at).collect(),
            consumers: BTreeSet::new(),
            next_partition: 0,
            next_consumer: 0,
        }
    }
}
