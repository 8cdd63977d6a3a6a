//! One node's view of the cluster, as `ClusterStatus` reports it.

use raftmq_proto::v1 as proto;
use serde::Serialize;

use crate::client::Route;
use crate::{Client, ClientError};

/// A node's answer to `ClusterStatus`. Views differ between nodes (a
/// partitioned node may believe in an old leader); ask several to compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: String,
    pub members: Vec<Member>,
    /// How long the node has known no leader, in milliseconds (0 while it
    /// knows one).
    pub leaderless_ms: u64,
    /// Last log index in the node's latest snapshot.
    pub snapshot_index: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: u64,
    /// Where clients reach it.
    pub address: String,
    /// Where the other nodes reach it.
    pub peer_address: String,
    pub voter: bool,
    /// Replication progress, known only when the answering node leads.
    pub matched_index: Option<u64>,
}

/// A node's answer to `TakeSnapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotTaken {
    /// The last log index the snapshot covers.
    pub snapshot_index: u64,
    /// From the request to the snapshot written, in milliseconds.
    pub took_ms: u64,
}

impl From<proto::TakeSnapshotResponse> for SnapshotTaken {
    fn from(taken: proto::TakeSnapshotResponse) -> SnapshotTaken {
        SnapshotTaken {
            snapshot_index: taken.snapshot_index,
            took_ms: taken.took_ms,
        }
    }
}

/// The outcome of asking one address, for `cluster_status_all`: one dead
/// node must not hide the others' answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub address: String,
    pub status: Result<ClusterStatus, ClientError>,
}

impl From<proto::ClusterStatusResponse> for ClusterStatus {
    fn from(status: proto::ClusterStatusResponse) -> ClusterStatus {
        ClusterStatus {
            node_id: status.node_id,
            leader_id: status.leader_id,
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_log_index: status.last_log_index,
            role: status.role,
            members: status.members.into_iter().map(Member::from).collect(),
            leaderless_ms: status.leaderless_ms,
            snapshot_index: status.snapshot_index,
        }
    }
}

impl From<proto::Member> for Member {
    fn from(member: proto::Member) -> Member {
        Member {
            node_id: member.node_id,
            address: member.address,
            peer_address: member.peer_address,
            voter: member.voter,
            matched_index: member.matched_index,
        }
    }
}

/// A leadership hand-off's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaderMoved {
    pub leader_id: u64,
    /// From the request to the new leader known, in milliseconds.
    pub took_ms: u64,
}

/// Longest wait for an `AddNode` answer: the leader gives the new node 30 s
/// to catch up before it answers that it is still behind.
const ADD_NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(35);

impl Client {
    /// Hands leadership to node `to` (or the most caught-up voter) without
    /// an election timeout: the new leader.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<LeaderMoved, ClientError> {
        let request = proto::TransferLeaderRequest { node_id: to };
        let moved = self
            .call_unary(Route::Leader, request, |mut broker, request| async move {
                broker.transfer_leader(request).await
            })
            .await?;
        Ok(LeaderMoved {
            leader_id: moved.leader_id,
            took_ms: moved.took_ms,
        })
    }

    /// Adds node `id`, reachable by its peers at `address` and by clients
    /// at `client_address` (if that differs), as a learner, and makes it a
    /// voter once it has caught up: the members after.
    pub async fn add_node(
        &self,
        id: u64,
        address: &str,
        client_address: Option<&str>,
    ) -> Result<Vec<Member>, ClientError> {
        let request = proto::AddNodeRequest {
            node_id: id,
            address: address.to_string(),
            client_address: client_address.unwrap_or_default().to_string(),
        };
        // The leader waits up to 30 s for the new node to catch up.
        let timeout = self.options().rpc_timeout.max(ADD_NODE_TIMEOUT);
        let added = self
            .call_unary_within(
                Route::Leader,
                request,
                timeout,
                |mut broker, request| async move { broker.add_node(request).await },
            )
            .await?;
        Ok(added.members.into_iter().map(Member::from).collect())
    }

    /// Removes node `id` from the cluster (the leader hands leadership over
    /// first): the members after.
    pub async fn remove_node(&self, id: u64) -> Result<Vec<Member>, ClientError> {
        let request = proto::RemoveNodeRequest { node_id: id };
        let removed = self
            .call_unary(Route::Leader, request, |mut broker, request| async move {
                broker.remove_node(request).await
            })
            .await?;
        Ok(removed.members.into_iter().map(Member::from).collect())
    }
}
