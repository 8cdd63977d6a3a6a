//! Leadership hand-off (Raft thesis 3.10) on openraft 0.9, which has no
//! transfer call of its own.
//!
//! The leader, its new writes held by the caller, waits until the target
//! voter holds every entry of its log, then asks it (`TimeoutNow`) to stand
//! for election at once. The target's vote request carries a higher term and
//! a log as long as the leader's, so the leader grants it and becomes a
//! follower: with three voters that is the majority, and the target leads
//! within a few round trips, with no election timeout.
//!
//! openraft's voters refuse any vote while their leader's lease (the
//! longest election timeout since they last heard from it) lasts. The
//! leader's own lease counts from when it was elected, so a leader younger
//! than that waits it out first. The other followers refuse until their
//! lease runs out: with more than three voters the target needs one of them,
//! and the hand-off takes about an election timeout, as an election would.
//! openraft 0.10's `transfer_leader` lifts that lease on every node.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::network::PeerError;
use super::typ::{Raft, RaftError};
use super::wire::{decode_reply, encode_request};
use super::RaftHandle;
use crate::machine::NodeId;

/// How long the `TimeoutNow` call may take.
pub(super) const TIMEOUT_NOW_TTL: Duration = Duration::from_secs(1);

/// The leader's request to a caught-up voter: stand for election now.
/// Ignored unless the term and the leader are still the receiver's, so a
/// late copy never deposes a later leader.
#[derive(Serialize, Deserialize, Debug)]
pub struct TimeoutNow {
    pub term: u64,
    pub leader: NodeId,
}

/// Sends a `TimeoutNow` body to the node at an address; the reply body.
pub(super) type Nudge = Arc<
    dyn Fn(String, Vec<u8>) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, PeerError>> + Send>>
        + Send
        + Sync,
>;

/// Why leadership did not move.
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<String> },
    #[error("node {0} is not a voter of this cluster")]
    NotVoter(NodeId),
    #[error("no other voter to hand leadership to")]
    NoVoter,
    #[error("no quorum has answered this leader within an election timeout")]
    NoQuorum,
    #[error("node {target} had not caught up within {within:?}")]
    Behind { target: NodeId, within: Duration },
    #[error("node {target} did not take the request to stand: {reason}")]
    Refused { target: NodeId, reason: String },
    #[error("leadership had not moved within {0:?}")]
    TimedOut(Duration),
    #[error("the Raft core stopped")]
    Stopped,
}

/// The voter a hand-off goes to: `to` if it is one (this node itself: no
/// hand-off), else the one the leader knows to hold the most of its log.
pub(super) fn target(
    me: NodeId,
    to: Option<NodeId>,
    voters: &[NodeId],
    matched: impl Fn(NodeId) -> Option<u64>,
) -> Result<NodeId, HandOffError> {
    match to {
        Some(id) if voters.contains(&id) => Ok(id),
        Some(id) => Err(HandOffError::NotVoter(id)),
        None => voters
            .iter()
            .copied()
            .filter(|id| *id != me)
            .max_by_key(|id| (matched(*id), std::cmp::Reverse(*id)))
            .ok_or(HandOffError::NoVoter),
    }
}

/// The receiving half: stands for election if `ask` still describes this
/// node's term and leader and this node votes. Answers whether it stood.
pub(super) async fn stand(raft: &Raft, ask: &TimeoutNow) -> Result<bool, RaftError> {
    let stands = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        m.current_term == ask.term
            && m.current_leader == Some(ask.leader)
            && m.membership_config
                .membership()
                .voter_ids()
                .any(|id| id == m.id)
    };
    if stands {
        tracing::info!(
            term = ask.term,
            from = ask.leader,
            "handed leadership: standing for election"
        );
        raft.trigger().elect().await.map_err(RaftError::Fatal)?;
    }
    Ok(stands)
}

impl RaftHandle {
    /// Hands leadership to `to` (or the most caught-up voter) and answers
    /// the new leader, all within `within`. The target must come to hold
    /// the leader's whole log, so new writes stop: `hold` is awaited once
    /// the hand-off begins to wait on the log (it resolves when no write is
    /// on its way to Raft), and what it gives is kept until leadership has
    /// moved or the hand-off failed.
    pub async fn hand_off<H>(
        &self,
        to: Option<NodeId>,
        within: Duration,
        hold: impl Future<Output = H>,
    ) -> Result<NodeId, HandOffError> {
        let deadline = Instant::now() + within;
        let mut metrics = self.raft.metrics();
        let (term, target, addr) = {
            let m = metrics.borrow_and_update();
            if m.current_leader != Some(self.id) {
                return Err(HandOffError::NotLeader {
                    leader: self.leadership().err().flatten(),
                });
            }
            // A leader cut off from its quorum has nobody to hand over to
            // (and a stop should not wait for one).
            let quorum_ack = m.millis_since_quorum_ack;
            if quorum_ack.is_none_or(|ms| ms > self.election_max.as_millis() as u64) {
                return Err(HandOffError::NoQuorum);
            }
            let membership = m.membership_config.membership();
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            let progress = m.replication.clone().unwrap_or_default();
            let target = target(self.id, to, &voters, |id| {
                progress
                    .get(&id)
                    .copied()
                    .flatten()
                    .map(|log_id| log_id.index)
            })?;
            let addr = membership.get_node(&target).map(|node| node.peer.clone());
            (m.current_term, target, addr)
        };
        if target == self.id {
            return Ok(self.id);
        }
        let addr = addr.ok_or(HandOffError::NotVoter(target))?;
        // Our own lease must be over, or we would refuse the target's vote;
        // writes go on meanwhile.
        let elected_at = self
            .raft
            .with_raft_state(|state| state.vote_last_modified())
            .await
            .map_err(|_| HandOffError::Stopped)?;
        if let Some(at) = elected_at {
            tokio::time::sleep_until((at + self.election_max).min(deadline)).await;
        }
        let _held = hold.await;
        // The core takes requests in order and runs what each asks of the
        // log before the next: once it has answered this one, every write
        // handed to it is on disk, and the last entry there is the last.
        self.raft
            .with_raft_state(|_| ())
            .await
            .map_err(|_| HandOffError::Stopped)?;
        let last = self
            .disk
            .last_entry()
            .map_err(|e| HandOffError::Refused {
                target,
                reason: format!("reading the last entry: {e}"),
            })?
            .map(|(index, _)| index);
        // The leader itself must not stand while the target does, or with
        // more than three voters it can win the election it started.
        self.raft.runtime_config().elect(false);
        let _elects_again = ElectsAgain(&self.raft);
        let caught_up = async {
            loop {
                let done = {
                    let m = metrics.borrow_and_update();
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&target).copied().flatten())
                        .map(|log_id| log_id.index);
                    matched >= last
                };
                if done {
                    return Ok(());
                }
                if metrics.changed().await.is_err() {
                    return Err(HandOffError::Stopped);
                }
            }
        };
        // With the log held, a reachable target catches up in a round trip
        // or two; one that takes an election timeout is not there.
        let catch_up = self.election_max;
        tokio::time::timeout_at(deadline.min(Instant::now() + catch_up), caught_up)
            .await
            .map_err(|_| HandOffError::Behind {
                target,
                within: catch_up,
            })??;
        let ask = TimeoutNow {
            term,
            leader: self.id,
        };
        let body = encode_request(&ask).map_err(|e| HandOffError::Refused {
            target,
            reason: e.to_string(),
        })?;
        let refused = |reason: String| HandOffError::Refused { target, reason };
        let reply = tokio::time::timeout_at(deadline, (self.nudge)(addr, body))
            .await
            .map_err(|_| HandOffError::TimedOut(within))?
            .map_err(|e| refused(e.to_string()))?;
        match decode_reply::<bool, openraft::error::Infallible>(&reply) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(refused("its term or leader had changed".into())),
            Ok(Err(e)) => return Err(refused(e.to_string())),
            Err(e) => return Err(refused(e.to_string())),
        }
        let moved = async {
            loop {
                let leader = metrics.borrow_and_update().current_leader;
                if let Some(leader) = leader.filter(|leader| *leader != self.id) {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(HandOffError::Stopped);
                }
            }
        };
        tokio::time::timeout_at(deadline, moved)
            .await
            .map_err(|_| HandOffError::TimedOut(within))?
    }
}

/// Lets the node stand for election again when the hand-off ends, however
/// it ends.
struct ElectsAgain<'a>(&'a Raft);

impl Drop for ElectsAgain<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().elect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        me: NodeId,
        to: Option<NodeId>,
        voters: &[NodeId],
        matched: &[(NodeId, u64)],
    ) -> Result<NodeId, String> {
        target(me, to, voters, |id| {
            matched
                .iter()
                .find(|(m, _)| *m == id)
                .map(|(_, index)| *index)
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_target_is_the_voter_named_or_the_most_caught_up() {
        assert_eq!(check(1, None, &[1, 2, 3], &[(2, 10), (3, 12)]), Ok(3));
        assert_eq!(
            check(1, None, &[1, 2, 3], &[(2, 12), (3, 12)]),
            Ok(2),
            "ties go to the lowest id"
        );
        assert_eq!(
            check(1, None, &[1, 2, 3], &[(3, 5)]),
            Ok(3),
            "unknown progress counts least"
        );
        assert_eq!(check(1, Some(2), &[1, 2, 3], &[(3, 12)]), Ok(2));
        assert_eq!(
            check(1, Some(1), &[1, 2, 3], &[]),
            Ok(1),
            "to itself: nothing to do"
        );
        assert_eq!(
            check(1, Some(4), &[1, 2, 3], &[]),
            Err("node 4 is not a voter of this cluster".into())
        );
        assert_eq!(
            check(1, None, &[1], &[]),
            Err("no other voter to hand leadership to".into())
        );
    }
}
