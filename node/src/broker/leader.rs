//! Appends `LeaderStarted` when this node wins an election: consumer streams
//! lived on the previous leader, so their consumers are detached and their
//! messages return for redelivery to consumers that reconnect here. Also
//! keeps how long the node has known no leader, for its health check.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::machine::Command;
use crate::raft::{RaftHandle, RaftWatch};

use super::Proposer;

const ATTEMPTS_MAX: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Since when this node has known no leader (tokio time, so the
/// simulation's clock drives it).
#[derive(Debug)]
pub struct Leaderless {
    since: Mutex<Option<Instant>>,
}

impl Leaderless {
    /// A node starts knowing no leader.
    pub fn new() -> Self {
        Leaderless {
            since: Mutex::new(Some(Instant::now())),
        }
    }

    /// How long the node has known no leader; zero while it knows one.
    pub fn duration(&self) -> Duration {
        self.lock().map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn observe(&self, has_leader: bool) {
        let mut since = self.lock();
        match (has_leader, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Leaderless {
    fn default() -> Self {
        Leaderless::new()
    }
}

/// Runs until the Raft node shuts down.
pub async fn watch_leadership(
    raft: RaftHandle,
    proposer: Proposer,
    leaderless: std::sync::Arc<Leaderless>,
) {
    let node = raft.id();
    let mut watch = raft.watch();
    let mut announced_term = None;
    loop {
        let status = watch.status();
        leaderless.observe(status.leader.is_some());
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
