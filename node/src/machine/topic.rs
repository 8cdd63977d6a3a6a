//! Topics and their partitions: append-only sequences of message records
//! with dense offsets, trimmed from the front once every subscription acked
//! them. A record points at its body in the log (`BodyRef`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ids::KeyHash;
use super::lifetime::Lifetime;
use super::live::LiveBodies;
use super::producers::Producers;
use super::records::Records;
use super::rejection::Rejection;
use super::subscription::{Start, Subscription};

/// A message as a producer sends it, and as its log entry keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: BTreeMap<String, String>,
    /// Boxed, and none when no property is set (most messages): a byte in
    /// the log, a pointer in the bodies' cache.
    pub properties: Option<Box<Properties>>,
}

/// What a message says of itself, as AMQP's basic properties do: stored
/// and delivered unchanged; only `ttl_ms` and the delay mean anything to
/// the state machine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub message_id: Option<String>,
    /// The publisher's own time, ms since the epoch.
    pub timestamp_ms: Option<u64>,
    /// The message's type name (AMQP's `type`).
    pub r#type: Option<String>,
    pub app_id: Option<String>,
    /// Expires this long after it is published (AMQP's `expiration`), or
    /// after it becomes due if delayed; the topic's TTL, if shorter, wins.
    pub ttl_ms: Option<u32>,
    /// Not handed out before this long after it is published.
    pub delay_ms: Option<u32>,
    /// Not handed out before this time, ms since the epoch (the later of
    /// this and `delay_ms` wins).
    pub not_before_ms: Option<u64>,
    /// Among deliverable messages, higher goes first, up to the topic's
    /// `max_priority` (higher counts as that).
    pub priority: Option<u32>,
}

impl NewMessage {
    /// When a message published at `now_ms` becomes due, if it is delayed
    /// past then.
    pub fn due_ms(&self, now_ms: u64) -> Option<u64> {
        let properties = self.properties.as_deref()?;
        let after_delay = properties
            .delay_ms
            .map_or(0, |delay| now_ms.saturating_add(u64::from(delay)));
        let due = after_delay.max(properties.not_before_ms.unwrap_or(0));
        (due > now_ms).then_some(due)
    }
}

/// A message as a consumer gets it: its body from the log entry that
/// published it, put together with what the state kept (`Stored::message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: BTreeMap<String, String>,
    pub properties: Option<Box<Properties>>,
    pub publish_ms: u64,
}

/// Where a retained message's body is: the log entry that published it, by
/// index and term (together they name one entry, whichever replica reads
/// it), and its place among the messages that entry publishes
/// (`Request::message`). The log is the body store: the state keeps only
/// this (ARCHITECTURE.md, "Bodies").
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BodyRef {
    pub index: u64,
    pub term: u64,
    pub slot: u32,
}

/// A retained message as the state keeps it: a fixed-size record, its body
/// in the log. 56 bytes (2 of them padding); a message
/// allocates only once dead-lettered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Where its body is (`body()`): a `BodyRef` spelled out, so that
    /// `bytes` takes the room that would be its padding (64 bytes a record
    /// otherwise). Encoded as the nested struct was.
    body_index: u64,
    body_term: u64,
    body_slot: u32,
    /// What it counts against its topic's byte limit.
    pub bytes: u32,
    /// Dispatch needs only the key's hash: it routes and orders by key
    /// (`key()`). Spelled out as a hash and a flag, not an `Option`, whose
    /// tag would take 8 bytes.
    key_hash: KeyHash,
    keyed: bool,
    pub publish_ms: u64,
    /// Headers dead-lettering added, over the body's own on delivery.
    pub added_headers: Option<Box<BTreeMap<String, String>>>,
    /// How long after `publish_ms` it expires; 0: never. At most
    /// `u32::MAX` ms (49 days), as RabbitMQ's `x-message-ttl`.
    pub ttl_ms: u32,
    /// Its priority level, within its topic's `max_priority`: which lane
    /// of partitions it is in (`Topic::route`).
    pub priority: u8,
}

impl Stored {
    /// A message just published, its body at `body`, expiring `ttl_ms`
    /// after `publish_ms` (0: never).
    pub fn new(
        body: BodyRef,
        bytes: u32,
        key: Option<KeyHash>,
        publish_ms: u64,
        ttl_ms: u32,
    ) -> Stored {
        Stored {
            body_index: body.index,
            body_term: body.term,
            body_slot: body.slot,
            bytes,
            key_hash: key.unwrap_or_default(),
            keyed: key.is_some(),
            publish_ms,
            added_headers: None,
            ttl_ms,
            priority: 0,
        }
    }

    /// The same record at priority `priority`.
    pub fn with_priority(self, priority: u8) -> Stored {
        Stored { priority, ..self }
    }

    /// Its key's hash, if it has a key.
    pub fn key(&self) -> Option<KeyHash> {
        self.keyed.then_some(self.key_hash)
    }

    /// Whether its time is up at `now_ms`: then it is never delivered.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.ttl_ms > 0 && self.publish_ms.saturating_add(u64::from(self.ttl_ms)) <= now_ms
    }

    /// Where its body is.
    pub fn body(&self) -> BodyRef {
        BodyRef {
            index: self.body_index,
            term: self.body_term,
            slot: self.body_slot,
        }
    }

    /// Its body moved (a relocation).
    pub fn set_body(&mut self, body: BodyRef) {
        (self.body_index, self.body_term, self.body_slot) = (body.index, body.term, body.slot);
    }

    /// The message as delivered: `body` is what its log entry holds at
    /// `self.body()`.
    pub fn message(&self, body: &NewMessage) -> Message {
        let mut headers = body.headers.clone();
        if let Some(added) = &self.added_headers {
            headers.extend(added.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Message {
            key: body.key.clone(),
            payload: body.payload.clone(),
            headers,
            properties: body.properties.clone(),
            publish_ms: self.publish_ms,
        }
    }

    /// A copy for a dead-letter topic: the same body, with `headers` added.
    pub fn dead_lettered(&self, headers: BTreeMap<String, String>, publish_ms: u64) -> Stored {
        let added_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut added = self.added_headers.as_deref().cloned().unwrap_or_default();
        added.extend(headers);
        let bytes = self.bytes.saturating_add(added_bytes as u32);
        Stored {
            added_headers: Some(Box::new(added)),
            // A dead letter starts afresh: it does not expire (RabbitMQ
            // drops the expiration when it dead-letters).
            ..Stored::new(self.body(), bytes, self.key(), publish_ms, 0)
                .with_priority(self.priority)
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Partition {
    /// Offset of the first retained message.
    pub base: u64,
    pub messages: Records<Stored>,
    /// Bytes retained, as `raftmq_rules::message_bytes` counts them.
    pub bytes: u64,
    /// The retained messages that were published delayed, by offset: when
    /// each becomes due. Beside the records, not in them, as few messages
    /// are delayed and a record has no room left.
    pub delayed: BTreeMap<u64, u64>,
}

/// Bounds on what a topic retains; 0 is unlimited. What passing one does
/// is the topic's `overflow`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicLimits {
    pub max_messages: u64,
    pub max_bytes: u64,
    pub overflow: Overflow,
}

/// What a publish past a topic's limits does (RabbitMQ's `x-overflow`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// It is refused whole (back-pressure): nothing is dropped.
    #[default]
    RejectPublish,
    /// It is stored, and the oldest messages go (to their subscriptions'
    /// dead-letter topics, reason `maxlen`) until the topic is within its
    /// limits again.
    DropHead,
}

/// How long a topic keeps its messages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Until every subscription acked them (a queue).
    #[default]
    UntilAcked,
    /// Acked or not (a stream, for replay), until they are older than
    /// `max_age_ms` (0: no age limit) or the topic is past its limits,
    /// when the oldest go, dead-lettered by no one.
    Stream { max_age_ms: u64 },
}

impl Overflow {
    pub fn name(self) -> &'static str {
        match self {
            Overflow::RejectPublish => "reject-publish",
            Overflow::DropHead => "drop-head",
        }
    }
}

raftmq_rules::impl_message_parts!(NewMessage);

/// What a message counts against its topic's byte limit, by the rule every
/// limit on a message shares.
pub fn counted_bytes(message: &NewMessage) -> u64 {
    raftmq_rules::message_bytes(message) as u64
}

impl Partition {
    /// The offset the next appended message gets.
    pub fn end(&self) -> u64 {
        self.base + self.messages.len() as u64
    }

    pub fn get(&self, offset: u64) -> Option<&Stored> {
        let index = offset.checked_sub(self.base)?;
        self.messages.get(usize::try_from(index).ok()?)
    }

    pub fn append(&mut self, message: Stored, live: &mut LiveBodies) -> u64 {
        self.bytes += u64::from(message.bytes);
        live.hold(message.body().index, message.bytes);
        self.messages.push_back(message);
        self.end() - 1
    }

    /// Where a subscription starting at `start` begins here. Publish times
    /// never run back within a partition, so a time is found by bisection.
    pub fn start_offset(&self, start: Start) -> u64 {
        match start {
            Start::Earliest => self.base,
            Start::Latest => self.end(),
            Start::Offset(offset) => offset.clamp(self.base, self.end()),
            Start::Time(at_ms) => {
                let (mut low, mut high) = (0, self.messages.len());
                while low < high {
                    let middle = low + (high - low) / 2;
                    match self.messages.get(middle) {
                        Some(message) if message.publish_ms < at_ms => low = middle + 1,
                        _ => high = middle,
                    }
                }
                self.base + low as u64
            }
        }
    }

    /// When the message at `offset` becomes due, if it was published
    /// delayed.
    pub fn due_ms(&self, offset: u64) -> Option<u64> {
        if self.delayed.is_empty() {
            return None; // the common case costs no lookup
        }
        self.delayed.get(&offset).copied()
    }

    /// Drops every message below `offset`.
    pub fn trim_to(&mut self, offset: u64, live: &mut LiveBodies) {
        if !self.delayed.is_empty() {
            self.delayed = self.delayed.split_off(&offset);
        }
        while self.base < offset {
            let Some(message) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= u64::from(message.bytes);
            live.release(message.body().index, message.bytes);
            self.base += 1;
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Topic {
    pub partitions: Vec<Partition>,
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Round-robin counter for keyless messages.
    pub next_keyless: u64,
    /// Idempotent producers' recent batches.
    pub producers: Producers,
    pub limits: TopicLimits,
    /// Every message expires this long after it is published (0: never),
    /// or sooner by its own `ttl_ms`.
    pub message_ttl_ms: u32,
    /// Who may consume it and how long it outlives its last consumer.
    pub lifetime: Lifetime,
    pub retention: Retention,
    /// The highest priority its messages may have (0: none, at most
    /// `PRIORITY_MAX`). Each level has a lane of partitions of its own:
    /// `partitions` holds `max_priority + 1` lanes of the declared count,
    /// lowest first, so level `l` of key partition `p` is
    /// `l * key_partitions + p`.
    pub max_priority: u8,
    /// Messages appended since it was created (metrics; see `Tally`).
    pub published: u64,
}

impl Topic {
    pub fn new(
        partitions: u32,
        limits: TopicLimits,
        message_ttl_ms: u32,
        lifetime: Lifetime,
        max_priority: u8,
        retention: Retention,
    ) -> Self {
        let lanes = partitions * (u32::from(max_priority) + 1);
        Topic {
            partitions: (0..lanes).map(|_| Partition::default()).collect(),
            subscriptions: BTreeMap::new(),
            next_keyless: 0,
            producers: Producers::default(),
            limits,
            message_ttl_ms,
            lifetime,
            max_priority,
            retention,
            published: 0,
        }
    }

    /// Priority levels: each a lane of `key_partitions` partitions.
    pub fn levels(&self) -> u32 {
        u32::from(self.max_priority) + 1
    }

    /// The partitions it was declared with: one lane's.
    pub fn key_partitions(&self) -> u32 {
        self.partition_count() / self.levels()
    }

    /// Consumers attached to any of its subscriptions.
    pub fn consumer_count(&self) -> usize {
        self.subscriptions.values().map(|s| s.consumers.len()).sum()
    }

    /// The TTL a message published here gets: the shorter of its own and
    /// the topic's (0: never expires).
    pub fn ttl_for(&self, message: &NewMessage) -> u32 {
        let own = message.properties.as_ref().and_then(|p| p.ttl_ms);
        match (own.filter(|t| *t > 0), self.message_ttl_ms) {
            (Some(own), 0) => own,
            (Some(own), topic) => own.min(topic),
            (None, topic) => topic,
        }
    }

    /// Messages and bytes retained.
    fn retained(&self) -> (u64, u64) {
        let count = self.partitions.iter().map(|p| p.messages.len() as u64);
        let bytes = self.partitions.iter().map(|p| p.bytes);
        (count.sum(), bytes.sum())
    }

    /// The partition whose oldest message goes next, at `now_ms`: in a
    /// drop-head topic or a stream past its limits, or a stream's message
    /// older than its `max_age_ms`, the oldest head by publish time (then
    /// the lowest index). None while nothing is to go.
    pub fn head_to_drop(&self, now_ms: u64) -> Option<usize> {
        let drops = self.limits.overflow == Overflow::DropHead || self.is_stream();
        if !drops {
            return None; // a queue that refuses instead: nothing to count per publish
        }
        let (oldest_ms, index) = self.oldest_head()?;
        let (count, bytes) = self.retained();
        let over = |max: u64, total: u64| max > 0 && total > max;
        let past_limits =
            drops && (over(self.limits.max_messages, count) || over(self.limits.max_bytes, bytes));
        let aged = self.aged_at(oldest_ms).is_some_and(|at| at <= now_ms);
        (past_limits || aged).then_some(index)
    }

    /// When a stream's oldest message grows too old, if it has an age
    /// limit and a message.
    pub fn next_aging(&self) -> Option<u64> {
        if !matches!(self.retention, Retention::Stream { max_age_ms } if max_age_ms > 0) {
            return None; // no heads to look at
        }
        self.aged_at(self.oldest_head()?.0)
    }

    fn aged_at(&self, publish_ms: u64) -> Option<u64> {
        match self.retention {
            Retention::Stream { max_age_ms } if max_age_ms > 0 => {
                Some(publish_ms.saturating_add(max_age_ms))
            }
            _ => None,
        }
    }

    /// The oldest retained message's publish time and partition.
    fn oldest_head(&self) -> Option<(u64, usize)> {
        let heads = self.partitions.iter().enumerate();
        heads
            .filter_map(|(index, p)| p.messages.get(0).map(|m| (m.publish_ms, index)))
            .min()
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.retention, Retention::Stream { .. })
    }

    /// Refuses `adding` messages of `new_bytes` in all if they would take
    /// the topic past its limits, unless it drops its head instead.
    pub fn admit(&self, name: &str, adding: u64, new_bytes: u64) -> Result<(), Rejection> {
        let unlimited = self.limits.max_messages == 0 && self.limits.max_bytes == 0;
        if unlimited || self.limits.overflow == Overflow::DropHead || self.is_stream() {
            return Ok(()); // nothing to count on the publish path
        }
        let (count, bytes) = self.retained();
        let over = |max: u64, total: u64| max > 0 && total > max;
        let limit = if over(self.limits.max_messages, count + adding) {
            format!(
                "{count} of at most {} messages retained",
                self.limits.max_messages
            )
        } else if over(self.limits.max_bytes, bytes + new_bytes) {
            format!(
                "{bytes} of at most {} bytes retained",
                self.limits.max_bytes
            )
        } else {
            return Ok(());
        };
        Err(Rejection::TopicFull {
            topic: name.to_string(),
            limit,
        })
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Routes a message to a partition and appends it there, not to be
    /// handed out before `due_ms` if set: its (partition, offset).
    pub fn store(
        &mut self,
        message: Stored,
        due_ms: Option<u64>,
        live: &mut LiveBodies,
    ) -> (u32, u64) {
        let index = self.route(message.key(), message.priority) as usize;
        let partition = &mut self.partitions[index];
        let offset = partition.append(message, live);
        self.published += 1;
        if let Some(due) = due_ms {
            partition.delayed.insert(offset, due);
        }
        (index as u32, offset)
    }

    /// Keyed messages go to the wire contract's hash; keyless ones round
    /// robin, decided here so every replica picks the same partition; in
    /// the lane of their priority (capped at the topic's highest).
    fn route(&mut self, key: Option<KeyHash>, priority: u8) -> u32 {
        let count = self.key_partitions();
        let slot = match key {
            Some(key) => raftmq_rules::slot_for_hash(key, count),
            None => {
                let partition = (self.next_keyless % u64::from(count)) as u32;
                self.next_keyless += 1;
                partition
            }
        };
        u32::from(priority.min(self.max_priority)) * count + slot
    }

    /// Retention "until acked": a message is dropped once every subscription
    /// acked it; with no subscription at all, messages are kept for the first.
    pub fn trim(&mut self, live: &mut LiveBodies) {
        if self.subscriptions.is_empty() || self.is_stream() {
            return; // a stream keeps what was acked, for replay
        }
        for (index, partition) in self.partitions.iter_mut().enumerate() {
            let floor = self
                .subscriptions
                .values()
                .map(|s| s.cursors[index].floor)
                .min()
                .unwrap_or(partition.base);
            partition.trim_to(floor, live);
        }
    }
}
