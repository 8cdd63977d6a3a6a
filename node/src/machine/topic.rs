//! Topics and their partitions: append-only message sequences with dense
//! offsets, trimmed from the front once every subscription acked them.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use raftmq_rules::MessageParts;
use serde::{Deserialize, Serialize};

use super::producers::Producers;
use super::rejection::Rejection;
use super::subscription::Subscription;

/// A message as a producer sends it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: BTreeMap<String, String>,
}

/// A stored message: what the producer sent plus the leader's publish time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: BTreeMap<String, String>,
    pub publish_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Partition {
    /// Offset of the first retained message.
    pub base: u64,
    pub messages: VecDeque<Message>,
    /// Bytes retained, as `raftmq_rules::message_bytes` counts them.
    pub bytes: u64,
}

/// Bounds on what a topic retains; 0 is unlimited. A publish that would
/// pass one is refused (back-pressure), never silently dropped.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicLimits {
    pub max_messages: u64,
    pub max_bytes: u64,
}

/// A message as it arrives and as it is stored are counted alike, by the
/// rule every limit on a message shares (`raftmq_rules::message_bytes`).
macro_rules! message_parts {
    ($message:ty) => {
        impl MessageParts for $message {
            fn payload(&self) -> &[u8] {
                &self.payload
            }
            fn key(&self) -> Option<&[u8]> {
                self.key.as_deref()
            }
            fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
                self.headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
            }
        }
    };
}
message_parts!(NewMessage);
message_parts!(Message);

/// What a message counts against its topic's byte limit.
fn counted_bytes(message: &impl MessageParts) -> u64 {
    raftmq_rules::message_bytes(message) as u64
}

impl Partition {
    /// The offset the next appended message gets.
    pub fn end(&self) -> u64 {
        self.base + self.messages.len() as u64
    }

    pub fn get(&self, offset: u64) -> Option<&Message> {
        let index = offset.checked_sub(self.base)?;
        self.messages.get(usize::try_from(index).ok()?)
    }

    pub fn append(&mut self, message: Message) -> u64 {
        self.bytes += counted_bytes(&message);
        self.messages.push_back(message);
        self.end() - 1
    }

    /// Drops every message below `offset`.
    pub fn trim_to(&mut self, offset: u64) {
        while self.base < offset {
            let Some(message) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= counted_bytes(&message);
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
}

impl Topic {
    pub fn new(partitions: u32, limits: TopicLimits) -> Self {
        Topic {
            partitions: (0..partitions).map(|_| Partition::default()).collect(),
            subscriptions: BTreeMap::new(),
            next_keyless: 0,
            producers: Producers::default(),
            limits,
        }
    }

    /// Refuses `messages` if they would take the topic past its limits.
    pub fn admit(&self, name: &str, messages: &[NewMessage]) -> Result<(), Rejection> {
        if self.limits == TopicLimits::default() {
            return Ok(()); // unlimited: nothing to count on the publish path
        }
        let count: u64 = self
            .partitions
            .iter()
            .map(|p| p.messages.len() as u64)
            .sum();
        let bytes: u64 = self.partitions.iter().map(|p| p.bytes).sum();
        let new_bytes: u64 = messages.iter().map(counted_bytes).sum();
        let over = |max: u64, total: u64| max > 0 && total > max;
        let limit = if over(self.limits.max_messages, count + messages.len() as u64) {
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

    /// Keyed messages go to the wire contract's hash; keyless ones round
    /// robin, decided here so every replica picks the same partition.
    pub fn route(&mut self, key: Option<&[u8]>) -> u32 {
        let count = self.partition_count();
        match key {
            Some(key) => raftmq_rules::partition_for_key(key, count),
            None => {
                let partition = (self.next_keyless % u64::from(count)) as u32;
                self.next_keyless += 1;
                partition
            }
        }
    }

    /// Retention "until acked": a message is dropped once every subscription
    /// acked it; with no subscription at all, messages are kept for the first.
    pub fn trim(&mut self) {
        if self.subscriptions.is_empty() {
            return;
        }
        for (index, partition) in self.partitions.iter_mut().enumerate() {
            let floor = self
                .subscriptions
                .values()
                .map(|s| s.cursors[index].floor)
                .min()
                .unwrap_or(partition.base);
            partition.trim_to(floor);
        }
    }
}
