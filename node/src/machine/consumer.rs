//! A consumer as the replicated state knows it, and where its stream lives.

use serde::{Deserialize, Serialize};

use super::ids::NodeId;
use super::quirks::{self, Quirk};

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
pub(super) struct Consumer {
    pub topic: String,
    pub subscription: String,
    pub session: SessionAddr,
    pub prefetch: u32,
    /// Messages handed out and not yet acked or returned; never above
    /// `prefetch`.
    pub in_flight: u32,
    /// The last delivery's sequence number.
    pub sequence: u64,
}

impl Consumer {
    /// Whether it may take one more message.
    pub fn has_credit(&self) -> bool {
        self.in_flight < self.prefetch + u32::from(quirks::on(Quirk::PrefetchPlusOne))
    }
}
