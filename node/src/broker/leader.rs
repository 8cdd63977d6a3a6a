//! Appends `LeaderStarted` when this node wins an election: consumer streams
//! lived on the previous leader, so their consumers are detached and their
//! messages return for redelivery to consumers that reconnect here. Also
//! keeps how long the node has known no leader, for its health check.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::machine::Command;
use crate::raft::typ::Raft;

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
    raft: Raft,
    proposer: Proposer,
    node: u64,
    leaderless: std::sync::Arc<Leaderless>,
) {
    let mut metrics = raft.metrics();
    let mut announced_term = None;
    loop {
        let term = {
            let m = metrics.borrow_and_update();
            leaderless.observe(m.current_leader.is_some());
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
