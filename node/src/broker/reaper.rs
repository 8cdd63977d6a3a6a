//! Detaches orphaned consumers: consumers the replicated state still holds
//! but whose stream is gone from the leader.
//!
//! A stream's end proposes `Detach` at once, but that proposal can fail (no
//! quorum at that moment), and an `Attach` can commit after its handler gave
//! up waiting and closed the session. Either leaves a consumer that holds
//! messages and, in failover order, blocks the consumers behind it. Only the
//! leader serves streams, so on the leader any consumer without an open
//! local session is an orphan.

use std::sync::Arc;
use std::time::Duration;

use crate::machine::Command;

use super::{Broker, ProposeError};

/// How often the leader looks for orphans.
const REAP_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait for one detach to commit.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until the node shuts down.
pub async fn reap_orphans(broker: Arc<Broker>) {
    loop {
        tokio::time::sleep(REAP_INTERVAL).await;
        if broker.leadership().is_err() {
            continue;
        }
        let consumers = broker.machine.read(|state| state.consumer_sessions());
        for (consumer, session) in consumers {
            if broker.sessions.is_open(session) {
                continue;
            }
            tracing::info!(consumer, ?session, "detaching orphaned consumer");
            let detach = broker.proposer.propose(Command::Detach { consumer });
            match tokio::time::timeout(DETACH_TIMEOUT, detach).await {
                Ok(Err(ProposeError::ShuttingDown)) => return,
                Ok(Err(e)) => tracing::debug!(consumer, error = %e, "orphan not detached yet"),
                Ok(Ok(_)) | Err(_) => {}
            }
        }
    }
}
