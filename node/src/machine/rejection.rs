//! Why the state machine refuses a command: data every replica computes
//! alike, answered to whoever proposed it.

use serde::{Deserialize, Serialize};

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
    /// `what` is "topic" or "exchange".
    #[error("{what} {name:?} exists with {setting} {existing}, not {asked}")]
    SettingMismatch {
        what: String,
        name: String,
        setting: String,
        existing: String,
        asked: String,
    },
    #[error("topic {0:?} is exclusive to another client")]
    Exclusive(String),
    #[error("topic {topic:?} has {consumers} consumer(s) attached")]
    InUse { topic: String, consumers: usize },
    #[error("topic {topic:?} retains {messages} message(s)")]
    NotEmpty { topic: String, messages: u64 },
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("exchange {0:?} does not exist")]
    UnknownExchange(String),
    #[error("exchange {0:?} already exists")]
    ExchangeExists(String),
    #[error("exchange {exchange:?} has {bindings} binding(s)")]
    ExchangeInUse { exchange: String, bindings: usize },
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
