//! What goes through the Raft log (commands), what applying them answers
//! (outcomes) and what they cause outside the state machine (effects).

use serde::{Deserialize, Serialize};

use super::producers::ProducerTag;
use super::state::Delivery;
use super::subscription::SubscriptionConfig;
use super::topic::{NewMessage, TopicLimits};
use super::{ConsumerId, NodeId};

/// One Raft log entry's payload: commands batched by the leader, stamped
/// with the leader's clock. The state machine's time is
/// `max(previous time, stamp_ms)`, so it never runs back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Request {
    pub stamp_ms: u64,
    pub commands: Vec<Command>,
}

/// Where a consumer's stream lives: the node, that node's boot id (so that a
/// restarted node never mistakes an old session for a new one) and the
/// session number within that boot.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionAddr {
    pub node: NodeId,
    pub boot: u64,
    pub session: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    CreateTopic {
        name: String,
        partitions: u32,
        limits: TopicLimits,
    },
    Publish {
        topic: String,
        messages: Vec<NewMessage>,
        /// Set by idempotent producers.
        producer: Option<ProducerTag>,
    },
    /// Attaches a consumer, creating the subscription at the earliest
    /// retained offset (with `config`, or the defaults) if it does not exist.
    /// A `config` whose mode differs from an existing subscription's is
    /// refused.
    Attach {
        topic: String,
        subscription: String,
        prefetch: u32,
        session: SessionAddr,
        config: Option<SubscriptionConfig>,
    },
    /// The consumer's stream ended: its in-flight messages return to the
    /// subscription without counting a failure.
    Detach { consumer: ConsumerId },
    Ack {
        topic: String,
        subscription: String,
        positions: Vec<(u32, u64)>,
    },
    /// Returns delivered messages, counting a failure: for redelivery
    /// after `delay_ms`, or to the dead-letter topic if not `requeue`.
    Nack {
        topic: String,
        subscription: String,
        positions: Vec<(u32, u64)>,
        requeue: bool,
        delay_ms: u64,
    },
    /// Appended by the leader when `State::next_deadline` is due: returns
    /// messages whose ack timeout passed and hands out delayed ones.
    Tick,
    /// Appended by a newly elected leader: consumer streams lived on the old
    /// leader, so every consumer is detached and its messages return.
    LeaderStarted { node: NodeId },
}

/// The answer to one command, returned to whoever proposed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Outcome {
    Done,
    /// The (partition, offset) of each published message, in order.
    Published(Vec<(u32, u64)>),
    Attached(ConsumerId),
    Rejected(Rejection),
}

/// Why the state machine refused a command. Data, not an error: every
/// replica refuses the same command the same way.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("invalid {what} name {name:?}: use 1 to 255 characters of A-Z a-z 0-9 . _ -")]
    InvalidName { what: String, name: String },
    #[error("partitions must be between 1 and {max}, got {got}")]
    InvalidPartitions { got: u32, max: u32 },
    #[error("prefetch must be between 1 and {max}, got {got}")]
    InvalidPrefetch { got: u32, max: u32 },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("subscription {subscription:?} does not exist on topic {topic:?}")]
    UnknownSubscription { topic: String, subscription: String },
    #[error("partition {partition} does not exist (the topic has {partitions})")]
    UnknownPartition { partition: u32, partitions: u32 },
    #[error("no message at partition {partition} offset {offset}")]
    NoSuchMessage { partition: u32, offset: u64 },
    #[error(
        "message at partition {partition} offset {offset} was never delivered to this subscription"
    )]
    NotDelivered { partition: u32, offset: u64 },
    #[error("message at partition {partition} offset {offset} is not in flight")]
    NotInFlight { partition: u32, offset: u64 },
    #[error("{what} limit reached ({max})")]
    LimitReached { what: String, max: usize },
    #[error("empty {0}")]
    Empty(String),
    #[error("subscription {subscription:?} is {existing}, not {asked}")]
    ModeMismatch {
        subscription: String,
        existing: String,
        asked: String,
    },
    #[error("subscription {0:?} is exclusive and already has a consumer")]
    ConsumerBusy(String),
    #[error("{0}")]
    Invalid(String),
    #[error("topic {topic:?} is full: {limit}; consumers must ack before more is accepted")]
    TopicFull { topic: String, limit: String },
    #[error("producer {producer}: sequence {got} out of order, expected {expected}; resend from {expected}")]
    OutOfOrder {
        producer: u64,
        expected: u64,
        got: u64,
    },
    #[error("producer {producer}: sequence {sequence} was stored, but its position is no longer remembered")]
    RepeatForgotten { producer: u64, sequence: u64 },
}

/// Something applying a command causes outside the state machine. Every
/// replica computes the same effects; only the node holding the addressed
/// session acts on them, the others drop them.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Deliver {
        to: SessionAddr,
        delivery: Delivery,
    },
    /// The consumer is detached: its stream should end.
    Closed {
        to: SessionAddr,
        consumer: ConsumerId,
    },
}

impl Effect {
    pub fn session(&self) -> SessionAddr {
        match self {
            Effect::Deliver { to, .. } | Effect::Closed { to, .. } => *to,
        }
    }
}
