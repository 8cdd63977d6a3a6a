//! What applying a command causes outside the state machine: a message
//! handed to a consumer, or a consumer's stream to close.

use super::consumer::SessionAddr;
use super::ids::ConsumerId;
use super::topic::Stored;

/// A message handed to a consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub consumer: ConsumerId,
    /// Dense per consumer, from 1.
    pub sequence: u64,
    pub partition: u32,
    pub offset: u64,
    /// The message's record: the node holding the session reads its body
    /// (`Stored::body`) from the log, no other replica does.
    pub message: Stored,
    /// Handouts so far, this one included.
    pub attempts: u32,
    /// The log index whose apply handed it out.
    pub decided_at: u64,
    /// The state machine's time at that apply.
    pub decided_ms: u64,
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
