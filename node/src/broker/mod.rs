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

use tokio::sync::watch;

pub use compactor::{compact_when_due, COMPACT_FREES_BYTES};
pub use leader::{watch_leadership, Leaderless};
pub use leader_clock::LeaderClock;
pub use proposer::{Committed, ProposeError, Proposer};
pub use reaper::reap_orphans;
pub use sessions::{SessionEvent, Sessions};
pub use ticker::tick_when_due;

use crate::config::EdgeLimits;
use crate::machine::NodeId;
use crate::raft::RaftHandle;
use crate::raft::{Bodies, LogStore, StateMachineStore};

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
    pub leaderless: Arc<Leaderless>,
    /// Turns true when the node begins to stop: every open stream ends with
    /// UNAVAILABLE, so its client moves to another node.
    pub stopping: watch::Sender<bool>,
}

impl Broker {
    /// `Ok` when this node leads; otherwise the leader's address, if known.
    pub fn leadership(&self) -> Result<(), Option<String>> {
        self.raft.leadership()
    }
}
