//! Membership changes on the leader: a node joins as a learner, is caught
//! up, and only then votes (a voter that must first copy the whole log
//! would count toward every quorum while it cannot yet acknowledge
//! anything); a node leaves in one joint-consensus change.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError as OpenRaftError};
use openraft::ChangeMembers;
use tokio::time::Instant;

use super::{Addresses, Member, RaftHandle};
use crate::machine::NodeId;

/// Why a membership change was refused or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<String> },
    #[error("node {id} is already a member at {addresses}")]
    AddressConflict { id: NodeId, addresses: Addresses },
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    #[error("node {0} is the last voter; a cluster needs one")]
    LastVoter(NodeId),
    #[error("node {id} had not caught up within {within:?}; it stays a learner, ask again")]
    Behind { id: NodeId, within: Duration },
    #[error("changing the membership: {0}")]
    Failed(String),
}

impl RaftHandle {
    /// Adds node `id` at `addresses`: a learner first, a voter once it
    /// holds the log up to the entry that added it, all within `within`.
    /// Adding a member again at the same addresses only finishes what is
    /// missing.
    pub async fn add_node(
        &self,
        id: NodeId,
        addresses: Addresses,
        within: Duration,
    ) -> Result<Vec<Member>, MembershipError> {
        let deadline = Instant::now() + within;
        self.require_leader()?;
        let known = self.members().into_iter().find(|m| m.id == id);
        match &known {
            Some(member) if member.addresses != addresses => {
                return Err(MembershipError::AddressConflict {
                    id,
                    addresses: member.addresses.clone(),
                })
            }
            Some(member) if member.voter => return Ok(self.members()),
            _ => {}
        }
        let added = self
            .raft
            .add_learner(id, addresses, false)
            .await
            .map_err(|e| self.refused(e))?;
        let added_at = added.log_id.index;
        let mut metrics = self.raft.metrics();
        let caught_up = async {
            loop {
                let matched = metrics
                    .borrow_and_update()
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map(|log_id| log_id.index);
                if matched >= Some(added_at) {
                    return true;
                }
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
        };
        match tokio::time::timeout_at(deadline, caught_up).await {
            Ok(true) => {}
            Ok(false) => return Err(MembershipError::Failed("the Raft core stopped".into())),
            Err(_) => return Err(MembershipError::Behind { id, within }),
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await?;
        tracing::info!(node = id, "node added as a voter");
        Ok(self.members())
    }

    /// Removes node `id` from the membership, voter or learner. The caller
    /// hands leadership over first when `id` is this node.
    pub async fn remove_node(&self, id: NodeId) -> Result<Vec<Member>, MembershipError> {
        self.require_leader()?;
        let members = self.members();
        let Some(member) = members.iter().find(|m| m.id == id) else {
            return Err(MembershipError::NotMember(id));
        };
        let voters = members.iter().filter(|m| m.voter).count();
        let change = if member.voter {
            if voters == 1 {
                return Err(MembershipError::LastVoter(id));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.change(change).await?;
        tracing::info!(node = id, "node removed");
        Ok(self.members())
    }

    async fn change(
        &self,
        change: ChangeMembers<NodeId, Addresses>,
    ) -> Result<(), MembershipError> {
        // `retain: false`: a voter removed leaves the cluster, not a learner.
        self.raft
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(|e| self.refused(e))
    }

    fn require_leader(&self) -> Result<(), MembershipError> {
        self.leadership()
            .map_err(|leader| MembershipError::NotLeader { leader })
    }

    fn refused(
        &self,
        error: OpenRaftError<NodeId, ClientWriteError<NodeId, Addresses>>,
    ) -> MembershipError {
        match error {
            OpenRaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                MembershipError::NotLeader {
                    leader: forward.leader_node.map(|node| node.client),
                }
            }
            other => MembershipError::Failed(other.to_string()),
        }
    }
}
