//! A consumer as the replicated state knows it.

use serde::{Deserialize, Serialize};

use super::command::SessionAddr;
use crate::planted::{self, Bug};

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
        self.in_flight < self.prefetch + u32::from(planted::active(Bug::PrefetchPlusOne))
    }
}
