//! Breaks the split votes openraft 0.9 can repeat forever.
//!
//! openraft draws a node's election timeout once, when the node starts, and
//! checks it only on its tick (every 1.5 heartbeat intervals). Nodes started
//! together tick together; when their timeouts land in the same tick window
//! they stand for election at the same moment of every term, each votes for
//! itself, and the vote splits again. The simulation found three-node
//! clusters with no leader a minute after a clean start, and `raftmq-node
//! dev` starts its nodes together.

use std::time::Duration;

use openraft::ServerState;
use rand::Rng;

use super::runtime::SeededRng;
use super::typ::Raft;

/// A node that is still a candidate `patience` plus a random part of it
/// after it first stood stands once more at that moment, its own: its vote
/// request reaches the others before they stand again, and they vote for
/// it. The random part comes from the seeded RNG, so simulation runs repeat.
/// Runs until the Raft node shuts down.
pub async fn break_election_ties(raft: Raft, patience: Duration) {
    let mut metrics = raft.metrics();
    loop {
        let term = loop {
            let m = metrics.borrow_and_update().clone();
            if m.state == ServerState::Candidate {
                break m.current_term;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        };
        let jitter = SeededRng.gen_range(Duration::ZERO..patience);
        tokio::time::sleep(patience + jitter).await;
        let stuck = {
            let m = metrics.borrow_and_update();
            m.state == ServerState::Candidate && m.current_term > term
        };
        if stuck {
            tracing::info!(
                term,
                "split votes: standing for election at a moment of our own"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
    }
}
