//! Appends `LeaderStarted` when this node wins an election: consumer streams
//! lived on the previous leader, so their consumers are detached and their
//! messages return for redelivery to consumers that reconnect here. Also
//! keeps how long the node has known no leader, for its health check.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::machine::{Command, NodeId};
use crate::raft::{RaftHandle, RaftWatch};

use super::Proposer;

const ATTEMPTS_MAX: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What this node has seen of leadership: since when it has known no
/// leader (tokio time, so the simulation's clock drives it), for the health
/// check, and how often the term and the leader changed, for the metrics.
#[derive(Debug)]
pub struct LeaderHistory {
    seen: Mutex<Seen>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    leaderless_since: Option<Instant>,
    term: Option<u64>,
    leader: Option<NodeId>,
    /// Terms begun since this node started: each is an election, won or
    /// not, anywhere in the cluster.
    elections: u64,
    /// Times a leader other than the last one known became known.
    leader_changes: u64,
}

impl LeaderHistory {
    /// A node starts knowing no leader.
    pub fn new() -> Self {
        LeaderHistory {
            seen: Mutex::new(Seen {
                leaderless_since: Some(Instant::now()),
                term: None,
                leader: None,
                elections: 0,
                leader_changes: 0,
            }),
        }
    }

    /// How long the node has known no leader; zero while it knows one.
    pub fn leaderless(&self) -> Duration {
        self.lock()
            .leaderless_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Elections (terms begun) seen since the node started.
    pub fn elections(&self) -> u64 {
        self.lock().elections
    }

    /// Changes of the known leader since the node started.
    pub fn leader_changes(&self) -> u64 {
        self.lock().leader_changes
    }

    fn observe(&self, term: u64, leader: Option<NodeId>) {
        let mut seen = self.lock();
        // The first term read is where this node's log left off, not an
        // election it saw.
        if let Some(before) = seen.term.filter(|before| term > *before) {
            seen.elections += term - before;
        }
        seen.term = seen.term.max(Some(term));
        if leader.is_some() && leader != seen.leader {
            seen.leader_changes += 1;
            seen.leader = leader;
        }
        match (leader.is_some(), seen.leaderless_since) {
            (true, _) => seen.leaderless_since = None,
            (false, None) => seen.leaderless_since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for LeaderHistory {
    fn default() -> Self {
        LeaderHistory::new()
    }
}

/// Runs until the Raft node shuts down.
pub async fn watch_leadership(
    raft: RaftHandle,
    proposer: Proposer,
    history: std::sync::Arc<LeaderHistory>,
) {
    let node = raft.id();
    let mut watch = raft.watch();
    let mut announced_term = None;
    loop {
        let status = watch.status();
        history.observe(status.term, status.leader);
        let term = (status.leader == Some(node)).then_some(status.term);
        if let Some(term) = term.filter(|t| announced_term != Some(*t)) {
            announced_term = Some(term);
            announce(&watch, &proposer, node, term).await;
        }
        if !watch.changed().await {
            return;
        }
    }
}

async fn announce(watch: &RaftWatch, proposer: &Proposer, node: u64, term: u64) {
    for _ in 0..ATTEMPTS_MAX {
        match proposer.propose(Command::LeaderStarted { node }).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(term, error = %e, "leader-started not committed yet"),
        }
        let status = watch.status();
        let still_leader = status.leader == Some(node) && status.term == term;
        if !still_leader {
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}
