//! The node's broker runtime between gRPC and Raft: the proposer that
//! batches commands into log entries, the registry of local consumer
//! sessions that effects are routed to, the leader watch, and the
//! leader's own proposals (ticks, orphan detaches, compaction).

mod compactor;
mod leader;
mod leader_clock;
mod proposer;
mod reaper;
mod sessions;
mod ticker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use compactor::{compact_when_due, COMPACT_FREES_BYTES};
pub use leader::{watch_leadership, LeaderHistory};
pub use leader_clock::LeaderClock;
pub use proposer::{Committed, ProposeError, Proposer};
pub use reaper::reap_orphans;
pub use sessions::{SessionEvent, Sessions};
pub use ticker::tick_when_due;

use crate::config::EdgeLimits;
use crate::machine::NodeId;
use crate::raft::{Bodies, HandOffError, LogStore, RaftHandle, StateMachineStore};

/// Everything a request handler needs of its node.
pub struct Broker {
    pub id: NodeId,
    pub raft: RaftHandle,
    pub proposer: Proposer,
    pub sessions: Arc<Sessions>,
    pub machine: StateMachineStore,
    /// Where deliveries' bodies are read, by the node sending them.
    pub bodies: Arc<Bodies>,
    pub log: LogStore,
    pub limits: EdgeLimits,
    pub leader_history: Arc<LeaderHistory>,
    /// Turns true when the node begins to stop: every open stream ends with
    /// UNAVAILABLE, so its client moves to another node.
    pub stopping: watch::Sender<bool>,
}

/// How long a hand-off may take: waiting out this leader's own lease (an
/// election timeout at most), then, with writes held, the target catching
/// up and its election.
pub const HAND_OFF_WITHIN: Duration = Duration::from_secs(4);

impl Broker {
    /// `Ok` when this node leads; otherwise the leader's address, if known.
    pub fn leadership(&self) -> Result<(), Option<String>> {
        self.raft.leadership()
    }

    /// Hands leadership to `to`, or to the most caught-up voter, holding
    /// new writes while the target catches up: the new leader.
    pub async fn hand_off(&self, to: Option<NodeId>) -> Result<NodeId, HandOffError> {
        self.raft
            .hand_off(to, HAND_OFF_WITHIN, self.proposer.hold())
            .await
    }

    /// Before a stop: a leader with another voter hands leadership over, so
    /// clients see a new leader within round trips, not an election
    /// timeout. A failure is logged; the node stops anyway.
    pub async fn hand_off_before_stop(&self) {
        if self.leadership().is_err() || self.raft.voters().len() < 2 {
            return;
        }
        let started = Instant::now();
        match self.hand_off(None).await {
            Ok(leader) => tracing::info!(
                leader,
                took_ms = started.elapsed().as_millis() as u64,
                "handed leadership over before stopping"
            ),
            Err(e) => tracing::warn!(error = %e, "stopping without handing leadership over"),
        }
    }
}
