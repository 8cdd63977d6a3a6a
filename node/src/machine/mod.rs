//! The replicated state machine: topics, partitions, subscriptions and
//! consumers, and the rules that decide which consumer gets which message.
//!
//! It is pure: `State::apply` takes a leader-stamped request and returns the
//! outcomes and effects, with no clock, no I/O, no randomness and no
//! hash-ordered iteration, so every replica that applies the same log reaches
//! the same state and computes the same deliveries (DESIGN.md, "What goes
//! through the log"). Rejections are data in the outcome, not errors.

// Each module uses only those on the lines above its own, so the imports
// run one way (bottom up):
//   ids, lifetime, limits, live, quirks, records, rejection, deadlines
//   checks
//   consumer, exchange, producers, subscription
//   topic
//   command, effect, stats
//   dispatch
//   ledger: the moves commands share (append, dispatch, dead letters, refill)
//   settle
//   state: apply
//   invariants
mod checks;
mod command;
mod consumer;
mod deadlines;
mod dispatch;
mod effect;
mod exchange;
mod ids;
mod invariants;
mod ledger;
mod lifetime;
mod limits;
mod live;
mod producers;
pub(crate) mod quirks;
mod records;
mod rejection;
mod settle;
mod state;
mod stats;
mod subscription;
mod topic;

pub use command::{Command, Outcome, Request};
pub use consumer::SessionAddr;
pub use effect::{Delivery, Effect};
pub use exchange::{Binding, ExchangeKind, ExchangeSummary, DEFAULT_EXCHANGE, X_MATCH};
pub use ids::{ConsumerId, EntryId, KeyHash, NodeId};
pub use ledger::{REASON_EXPIRED, REASON_MAXLEN, REASON_MAX_DELIVERIES, REASON_REJECTED};
pub use limits::*;
pub use live::Held;
pub use producers::ProducerTag;
pub use records::Records;
pub use rejection::Rejection;
pub use state::{State, TopicSummary};
pub use stats::{PartitionStats, SubscriptionStats, SubscriptionTotals, TopicStats};
pub use subscription::{Mode, Start, SubscriptionConfig, Tally};
pub use topic::{
    BodyRef, Message, NewMessage, Overflow, Partition, Properties, Retention, Stored, TopicLimits,
};

#[cfg(test)]
mod tests;
