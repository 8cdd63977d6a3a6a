//! The replicated state machine: topics, partitions, subscriptions and
//! consumers, and the rules that decide which consumer gets which message.
//!
//! It is pure: `State::apply` takes a leader-stamped request and returns the
//! outcomes and effects, with no clock, no I/O, no randomness and no
//! hash-ordered iteration, so every replica that applies the same log reaches
//! the same state and computes the same deliveries (DESIGN.md, "What goes
//! through the log"). Rejections are data in the outcome, not errors.

mod command;
mod consumer;
mod dispatch;
mod invariants;
mod limits;
mod producers;
mod settle;
mod state;
mod subscription;
mod topic;

pub use command::{Command, Effect, Outcome, Rejection, Request, SessionAddr};
pub use limits::*;
pub use producers::ProducerTag;
pub use settle::{REASON_MAX_DELIVERIES, REASON_REJECTED};
pub use state::{Delivery, State, TopicSummary};
pub use subscription::{Mode, Start, SubscriptionConfig};
pub use topic::{Message, NewMessage, Partition, TopicLimits};

/// Identifies a consumer: assigned in log order when it attaches.
pub type ConsumerId = u64;

/// A Raft node id.
pub type NodeId = u64;

#[cfg(test)]
mod tests;
