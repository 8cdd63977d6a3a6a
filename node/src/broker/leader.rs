//! Appends `LeaderStarted` when this node wins an election: consumer streams
//! lived on the previous leader, so their consumers are detached and their
//! messages return for redelivery to consumers that reconnect here.

use std::time::Duration;

use crate::machine::Command;
use crate::raft::typ::Raft;

use super::Proposer;

const ATTEMPTS_MAX: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs until the Raft node shuts down.
pub async fn watch_leadership(raft: Raft, proposer: Proposer, node: u64) {
    let mut metrics = raft.metrics();
    let mut announced_term = None;
    loop {
        let term = {
            let m = metrics.borrow_and_update();
            (m.current_leader == Some(node)).then_some(m.current_term)
        };
        if let Some(term) = term.filter(|t| announced_term != Some(*t)) {
            announced_term = Some(term);
            announce(&raft, &proposer, node, term).await;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn announce(raft: &Raft, proposer: &Proposer, node: u64, term: u64) {
    for _ in 0..ATTEMPTS_MAX {
        match proposer.propose(Command::LeaderStarted { node }).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(term, error = %e, "leader-started not committed yet"),
        }
        let still_leader = {
            let m = raft.metrics().borrow().clone();
            m.current_leader == Some(node) && m.current_term == term
        };
        if !still_leader {
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}
