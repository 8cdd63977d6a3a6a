//! Appends `Tick` when the state machine has something due: an ack timeout
//! or a delayed redelivery. Never periodically: a cluster with nothing due
//! appends nothing (DESIGN.md, "Time").

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::machine::Command;

use super::{Broker, ProposeError};

/// How often the leader compares the next deadline with its clock; the
/// granularity of ack timeouts and delays.
const CHECK_EVERY: Duration = Duration::from_millis(20);
/// Longest wait for one tick to commit.
const TICK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until the node shuts down.
pub async fn tick_when_due(broker: Arc<Broker>, clock: Arc<dyn Clock>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if broker.leadership().is_err() {
            continue;
        }
        let due = broker.machine.read(|state| state.next_deadline());
        if due.is_none_or(|due| due > clock.now_ms()) {
            continue;
        }
        match tokio::time::timeout(TICK_TIMEOUT, broker.proposer.propose(Command::Tick)).await {
            Ok(Err(ProposeError::ShuttingDown)) => return,
            Ok(Err(e)) => tracing::debug!(error = %e, "tick not committed"),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
}
