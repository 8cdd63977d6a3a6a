//! Noticing that the Raft core stopped on its own.
//!
//! openraft ends its core on a storage error or a broken invariant and
//! leaves the rest of the process running: the node keeps answering
//! status calls, so a health check that only asks "do you answer" passes
//! and no supervisor restarts it. The node waits on this instead and exits.

use openraft::error::Fatal;

use super::typ::Raft;

/// Resolves with the reason when the core stops for any reason but a
/// requested shutdown; never resolves otherwise.
pub async fn core_failure(raft: Raft) -> String {
    let mut metrics = raft.metrics();
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
