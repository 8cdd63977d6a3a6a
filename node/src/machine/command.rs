//! What goes through the Raft log (commands) and what applying them answers
//! (outcomes).

use serde::{Deserialize, Serialize};

use super::consumer::SessionAddr;
use super::exchange::{Binding, ExchangeKind};
use super::ids::{ConsumerId, NodeId};
use super::producers::ProducerTag;
use super::rejection::Rejection;
use super::subscription::SubscriptionConfig;
use super::topic::{BodyRef, NewMessage, Retention, TopicLimits};

/// One Raft log entry's payload: commands batched by the leader, stamped
/// with the leader's clock. The state machine's time is
/// `max(previous time, stamp_ms)`, so it never runs back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Request {
    pub stamp_ms: u64,
    pub commands: Vec<Command>,
}

impl Request {
    /// The bodies this entry holds, in slot order: a stored message's
    /// `BodyRef::slot` counts them across the entry's publishes and
    /// relocations, whether or not each command was accepted.
    pub fn published(&self) -> impl Iterator<Item = &NewMessage> {
        self.commands.iter().flat_map(Command::bodies)
    }

    /// Each command with the slot of its first body in this entry.
    pub fn commands_with_first_slot(&self) -> impl Iterator<Item = (&Command, u32)> {
        let mut next_slot = 0u32;
        self.commands.iter().map(move |command| {
            let first_slot = next_slot;
            next_slot += command.bodies().len() as u32;
            (command, first_slot)
        })
    }

    /// Each body this entry's relocations copied, with its slot here.
    pub fn relocated(&self) -> impl Iterator<Item = (BodyRef, u32)> + '_ {
        self.commands_with_first_slot()
            .flat_map(|(command, first_slot)| {
                let from: &[BodyRef] = match command {
                    Command::Relocate { from, .. } => from,
                    _ => &[],
                };
                from.iter().copied().zip(first_slot..)
            })
    }

    /// The message at `slot` (`Request::published`).
    pub fn message(&self, slot: u32) -> Option<&NewMessage> {
        self.published().nth(slot as usize)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    /// Declares a topic: creates it (named by the server if `name` is
    /// empty), or, if it exists with the same
    /// settings, changes nothing and says so (RabbitMQ's queue.declare).
    /// Different settings are refused, naming the first that differs;
    /// `fail_if_exists` refuses an existing topic whatever its settings.
    CreateTopic {
        name: String,
        partitions: u32,
        limits: TopicLimits,
        /// Every message expires this long after it is published (0:
        /// never), as RabbitMQ's `x-message-ttl`.
        message_ttl_ms: u32,
        fail_if_exists: bool,
        /// The only client whose consumers may attach (an exclusive topic).
        owner: Option<u64>,
        /// Deleted once it has had no consumer this long (0: never), as
        /// RabbitMQ's `x-expires`.
        expires_ms: u32,
        /// The highest message priority (0: none), as `x-max-priority`.
        max_priority: u8,
        /// A queue's (until acked) or a stream's (by age and limits).
        retention: Retention,
    },
    /// Deletes a topic with its subscriptions and retained messages; its
    /// consumers' streams close. `if_unused`: only if no consumer is
    /// attached; `if_empty`: only if nothing is retained.
    DeleteTopic {
        name: String,
        if_unused: bool,
        if_empty: bool,
    },
    /// Deletes a subscription: its consumers' streams close, its messages
    /// in flight are forgotten, and what only it held back is trimmed.
    DeleteSubscription {
        topic: String,
        subscription: String,
    },
    Publish {
        topic: String,
        messages: Vec<NewMessage>,
        /// Set by idempotent producers.
        producer: Option<ProducerTag>,
    },
    /// Declares an exchange (RabbitMQ's exchange.declare): idempotent as
    /// `CreateTopic` is; a different kind or alternate is refused.
    DeclareExchange {
        name: String,
        kind: ExchangeKind,
        alternate: Option<String>,
        fail_if_exists: bool,
    },
    /// Deletes an exchange and its bindings; `if_unused`: only if it has
    /// none.
    DeleteExchange {
        name: String,
        if_unused: bool,
    },
    /// Binds a topic to an exchange (RabbitMQ's queue.bind).
    Bind {
        exchange: String,
        binding: Binding,
    },
    Unbind {
        exchange: String,
        binding: Binding,
    },
    /// Publishes through an exchange: each message is stored once, in this
    /// entry, and appended to every topic it routes to (`Exchanges::route`).
    /// If a topic it routes to is full, nothing is stored.
    PublishTo {
        exchange: String,
        routing_key: String,
        messages: Vec<NewMessage>,
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
        /// The client the consumer belongs to: an exclusive topic admits
        /// only its owner's.
        client: u64,
    },
    /// The consumer's stream ended: its in-flight messages return to the
    /// subscription without counting a failure.
    Detach {
        consumer: ConsumerId,
    },
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
    LeaderStarted {
        node: NodeId,
    },
    /// Appended by the leader's compactor: copies the bodies at `from`
    /// (`messages[i]` is the body at `from[i]`) into this entry, and every
    /// retained record pointing at one of them points here instead, so the
    /// old entries they kept alive can go (ARCHITECTURE.md, "Compaction").
    /// A body no record points at any more is ignored.
    Relocate {
        from: Vec<BodyRef>,
        messages: Vec<NewMessage>,
    },
}

impl Command {
    /// The bodies this command stores in its entry.
    pub fn bodies(&self) -> &[NewMessage] {
        match self {
            Command::Publish { messages, .. }
            | Command::PublishTo { messages, .. }
            | Command::Relocate { messages, .. } => messages,
            _ => &[],
        }
    }
}

/// Where a message published through an exchange went: (topic, partition,
/// offset).
pub type Placement = (String, u32, u64);

/// The answer to one command, returned to whoever proposed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Outcome {
    Done,
    /// A declared topic or exchange, by name (the server's, for a topic
    /// declared without one): `created` unless it existed with these
    /// settings.
    Declared {
        created: bool,
        name: String,
    },
    /// A deleted topic, and the messages it still retained.
    Deleted {
        messages: u64,
    },
    /// The (partition, offset) of each published message, in order.
    Published(Vec<(u32, u64)>),
    /// Where each message published through an exchange went, in order:
    /// (topic, partition, offset) for each topic it was appended to; none
    /// when it was unroutable.
    Routed(Vec<Vec<Placement>>),
    Attached(ConsumerId),
    Rejected(Rejection),
}
