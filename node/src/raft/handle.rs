//! The Raft node as the layers above see it: start it, write to it, ask who
//! leads and how far the log is, serve peers' RPCs, stop it. No openraft
//! type crosses this boundary, so the broker, the gRPC services and the
//! simulation's checkers never follow openraft's API.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError as OpenRaftError};
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::handoff::{Nudge, TIMEOUT_NOW_TTL};
use super::network::PeerLink;
use super::typ::{Raft, RaftMetrics};
use super::wire::{self, RpcKind, WireError};
use super::{
    break_election_ties, snapshot_when_due, Addresses, LogStore, Network, Peers, Response,
    StateMachineStore,
};
use crate::config::NodeConfig;
use crate::machine::{NodeId, Request};
use crate::planted::{self, Bug};
use crate::storage::Disk;
use crate::transport::RpcFaults;

/// Most log entries in one AppendEntries: with entries of at most 4 MiB
/// (the proposer's bound) plus one request, this keeps an RPC under
/// `RAFT_MESSAGE_BYTES_MAX`.
const ENTRIES_PER_APPEND_MAX: u64 = 8;

/// Most log entries kept behind each snapshot (openraft's
/// `max_in_snapshot_log_to_keep`).
const ENTRIES_KEPT_BEHIND_SNAPSHOT_MAX: u64 = 256;

/// How long sending one snapshot chunk may take, and the last chunk's
/// install with it: decoding the whole snapshot as it is copied to its
/// file and synced. openraft's 200 ms timed out every try of a 7 MB
/// snapshot in a debug build, and each try started over.
const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft configuration: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Start(String),
    #[error("initializing the cluster: {0}")]
    Initialize(String),
}

/// Why a write did not commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<String> },
    #[error("outcome unknown: {0}")]
    Unknown(String),
    #[error("raft has stopped")]
    Stopped,
}

/// Why `take_snapshot` did not answer with a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("nothing applied yet to snapshot")]
    NothingApplied,
    #[error("the Raft core stopped")]
    Stopped,
    #[error("no snapshot written within {0:?}")]
    TimedOut(Duration),
}

/// A node's role in its Raft group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    /// The Raft core has stopped, asked to or not.
    Shutdown,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

/// A member of the cluster as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub addresses: Addresses,
    pub voter: bool,
    /// The last entry known replicated to it: known only on the leader.
    pub matched: Option<u64>,
}

/// What this node's Raft knows now. Cheap to take: the simulation's
/// checkers read it after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: NodeId,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub role: Role,
    pub last_log_index: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
}

/// The node's Raft; clones share it.
#[derive(Clone)]
pub struct RaftHandle {
    pub(super) raft: Raft,
    pub(super) id: NodeId,
    /// Where bodies sent ahead of a snapshot are stored.
    pub(super) disk: Arc<dyn Disk>,
    /// Asks a peer to stand for election (`handoff`).
    pub(super) nudge: Nudge,
    /// The longest election timeout: openraft's leader lease.
    pub(super) election_max: Duration,
}

impl RaftHandle {
    /// Starts Raft over `log` and `machine`, its own background tasks (the
    /// snapshot rule, the split-vote breaker) with it, and on an empty log
    /// initializes the cluster with every configured peer as a voter (every
    /// node may do so with the same membership).
    pub async fn start<P: Peers>(
        config: &NodeConfig,
        log: LogStore,
        machine: StateMachineStore,
        peers: Arc<P>,
        faults: Option<Arc<dyn RpcFaults>>,
    ) -> Result<RaftHandle, RaftError> {
        // The planted bug squeezes every election timeout into one tick
        // window and leaves split votes unbroken.
        let lockstep = planted::active(Bug::ElectionLockstep);
        let timings = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "raftmq".into(),
            heartbeat_interval: timings.heartbeat.as_millis() as u64,
            election_timeout_min: if lockstep {
                timings.election_max.as_millis() as u64 - 1
            } else {
                timings.election_min.as_millis() as u64
            },
            election_timeout_max: timings.election_max.as_millis() as u64,
            max_payload_entries: ENTRIES_PER_APPEND_MAX,
            // Taken by `snapshot_when_due`, which also weighs the log.
            snapshot_policy: SnapshotPolicy::Never,
            // A quarter of the interval stays behind each snapshot, so a
            // follower a moment behind catches up from the log rather than
            // from a snapshot; at most a few hundred entries, as entries
            // are up to 4 MiB and disk should follow what is retained.
            max_in_snapshot_log_to_keep: (config.snapshot_every / 4)
                .min(ENTRIES_KEPT_BEHIND_SNAPSHOT_MAX),
            install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))?;
        let nudge: Nudge = {
            let peers = peers.clone();
            Arc::new(move |addr: String, body: Vec<u8>| {
                let link = peers.link(&addr);
                Box::pin(
                    async move { link?.call(RpcKind::TimeoutNow, body, TIMEOUT_NOW_TTL).await },
                )
            })
        };
        // openraft panics at start (not an error) on a log purged past
        // the snapshot: a snapshot file older than the log, restored by
        // hand or damaged, is refused here with the reason.
        let purged = log
            .purged_index()
            .map_err(|e| RaftError::Start(e.to_string()))?;
        if purged > machine.applied_index() {
            return Err(RaftError::Start(format!(
                "the log is purged up to entry {} but the snapshot ends at {:?}: the snapshot file is older than the log",
                purged.unwrap_or_default(),
                machine.applied_index()
            )));
        }
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            Network::new(peers, faults, log.disk(), config.raft.heartbeat),
            log.clone(),
            machine.clone(),
        )
        .await
        .map_err(|e| RaftError::Start(e.to_string()))?;
        let handle = RaftHandle {
            raft: raft.clone(),
            id: config.id,
            disk: log.disk(),
            nudge,
            election_max: timings.election_max,
        };
        if !config.join {
            handle.initialize(config.members()).await?;
        }
        tokio::spawn(snapshot_when_due(
            raft.clone(),
            log,
            machine,
            config.snapshot_every,
        ));
        if !lockstep {
            tokio::spawn(break_election_ties(raft, timings.election_max));
        }
        Ok(handle)
    }

    async fn initialize(&self, members: BTreeMap<NodeId, Addresses>) -> Result<(), RaftError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Initialize(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another node initialized first and its membership already
            // reached us: that is the same cluster.
            Err(OpenRaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(RaftError::Initialize(e.to_string())),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Hands `request` to Raft as the next log entry and returns the future
    /// of its commit: the entry's index and its outcomes. Entries handed
    /// over one after another are logged in that order.
    pub async fn write(
        &self,
        request: Request,
    ) -> Result<impl Future<Output = Result<(u64, Response), WriteError>>, WriteError> {
        let answer = self
            .raft
            .client_write_ff(request)
            .await
            .map_err(|_fatal| WriteError::Stopped)?;
        Ok(async move {
            match answer.await {
                Ok(Ok(response)) => Ok((response.log_id.index, response.data)),
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => Err(WriteError::NotLeader {
                    leader: forward.leader_node.map(|node| node.client),
                }),
                Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
                    Err(WriteError::Unknown(e.to_string()))
                }
                Err(_) => Err(WriteError::Unknown("raft dropped the request".into())),
            }
        })
    }

    /// `Ok` when this node leads; otherwise the leader's address, if known.
    /// Cheap: every request handler asks.
    pub fn leadership(&self) -> Result<(), Option<String>> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        match m.current_leader {
            Some(leader) if leader == self.id => Ok(()),
            Some(leader) => Err(m
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|node| node.client.clone())),
            None => Err(None),
        }
    }

    pub fn status(&self) -> RaftStatus {
        status(&self.raft.metrics().borrow())
    }

    /// The voters of the cluster, as this node knows them.
    pub fn voters(&self) -> Vec<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// The members of the cluster, with their replication progress when
    /// this node leads.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addresses: node.clone(),
                voter: voters.contains(id),
                matched: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).copied().flatten())
                    .map(|log_id| log_id.index),
            })
            .collect()
    }

    /// Takes a snapshot of everything applied now and waits, at most
    /// `within`, until it is written: the index it covers.
    pub async fn take_snapshot(&self, within: Duration) -> Result<u64, SnapshotError> {
        let mut metrics = self.raft.metrics();
        let Some(target) = metrics.borrow().last_applied.map(|id| id.index) else {
            return Err(SnapshotError::NothingApplied);
        };
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|_| SnapshotError::Stopped)?;
        let taken = async {
            loop {
                let index = metrics.borrow_and_update().snapshot.map(|id| id.index);
                if let Some(index) = index.filter(|index| *index >= target) {
                    return Ok(index);
                }
                if metrics.changed().await.is_err() {
                    return Err(SnapshotError::Stopped);
                }
            }
        };
        tokio::time::timeout(within, taken)
            .await
            .map_err(|_| SnapshotError::TimedOut(within))?
    }

    /// Follows leader and term changes.
    pub fn watch(&self) -> RaftWatch {
        RaftWatch(self.raft.metrics())
    }

    /// Resolves with the reason when the Raft core stops for any reason but
    /// a requested shutdown; never resolves otherwise.
    pub async fn failure(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            let failure = match &metrics.borrow_and_update().running_state {
                Ok(()) | Err(Fatal::Stopped) => None,
                Err(fatal) => Some(fatal.to_string()),
            };
            if let Some(reason) = failure {
                return reason;
            }
            if metrics.changed().await.is_err() {
                // The core is gone and said nothing more: it was shut down.
                return std::future::pending().await;
            }
        }
    }

    /// Answers a peer's RPC: `body` as `wire` encodes it.
    pub async fn serve_rpc(
        &self,
        kind: RpcKind,
        group: u64,
        body: &[u8],
    ) -> Result<Vec<u8>, WireError> {
        wire::serve(&self.raft, self.disk.as_ref(), kind, group, body).await
    }

    /// Stops the Raft core.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Changes of one node's Raft status.
pub struct RaftWatch(watch::Receiver<RaftMetrics>);

impl RaftWatch {
    /// What Raft knows now.
    pub fn status(&self) -> RaftStatus {
        status(&self.0.borrow())
    }

    /// Waits for a change since the last call; false once Raft has
    /// stopped.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

fn role(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

fn status(m: &RaftMetrics) -> RaftStatus {
    RaftStatus {
        id: m.id,
        term: m.current_term,
        leader: m.current_leader,
        role: role(m.state),
        last_log_index: m.last_log_index,
        applied: m.last_applied.map(|id| id.index),
        snapshot: m.snapshot.map(|id| id.index),
    }
}
