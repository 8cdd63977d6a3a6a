//! Batches commands from every client into Raft log entries.
//!
//! Commands queue on a bounded channel; one task drains whatever is queued
//! (up to the entry limits) into a single leader-stamped entry and hands it
//! to openraft without waiting for the previous entry to commit. While one
//! entry is being replicated and flushed, the next one fills up: batching
//! and group commit come from the same queue.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedRwLockWriteGuard, RwLock, Semaphore};

use crate::clock::Clock;
use crate::machine::{Command, Outcome, Request};
use crate::raft::{RaftHandle, WriteError};

/// Commands waiting for a batch; senders wait when it is full.
const QUEUE_COMMANDS_MAX: usize = 16_384;
/// Most commands in one log entry.
const COMMANDS_PER_ENTRY_MAX: usize = 4_096;
/// Payload bytes after which an entry is closed.
const ENTRY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Entries handed to openraft and not yet answered.
const ENTRIES_IN_FLIGHT_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<String> },
    #[error("outcome unknown: {0}")]
    Unknown(String),
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// A command's outcome and the log index it was applied at.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub outcome: Outcome,
    pub index: u64,
}

type Reply = oneshot::Sender<Result<Committed, ProposeError>>;

struct Pending {
    command: Command,
    reply: Reply,
}

#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
    /// Read while an entry is handed to Raft; written by a `Hold`.
    handing: Arc<RwLock<()>>,
}

/// While alive, no entry goes to Raft: commands queue (up to the queue's
/// bound) and go once it is dropped.
pub struct Hold {
    _writes_wait: OwnedRwLockWriteGuard<()>,
}

impl Proposer {
    /// Starts the batching task; it ends when every `Proposer` is dropped.
    pub fn start(raft: RaftHandle, clock: Arc<dyn Clock>) -> Self {
        let (queue, commands) = mpsc::channel(QUEUE_COMMANDS_MAX);
        let handing = Arc::new(RwLock::new(()));
        tokio::spawn(run_batches(raft, clock, commands, handing.clone()));
        Proposer { queue, handing }
    }

    /// Waits until no entry is being handed to Raft, then holds new ones
    /// until the `Hold` is dropped (a leadership hand-off: the target must
    /// catch up with a log that stands still).
    pub async fn hold(&self) -> Hold {
        Hold {
            _writes_wait: self.handing.clone().write_owned().await,
        }
    }

    /// Appends `command` to the log and answers its outcome once the entry
    /// is committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Committed, ProposeError> {
        self.submit(command).await?.await
    }

    /// Queues `command` and returns the future of its outcome. Commands
    /// submitted one after another reach the log in that order, so a caller
    /// can pipeline many and still keep their order.
    pub async fn submit(
        &self,
        command: Command,
    ) -> Result<impl Future<Output = Result<Committed, ProposeError>>, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposeError::ShuttingDown)?;
        Ok(async move { answer.await.map_err(|_| ProposeError::ShuttingDown)? })
    }
}

async fn run_batches(
    raft: RaftHandle,
    clock: Arc<dyn Clock>,
    mut commands: mpsc::Receiver<Pending>,
    handing: Arc<RwLock<()>>,
) {
    let in_flight = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    while let Some(first) = commands.recv().await {
        let mut bytes = weight(&first.command);
        let mut batch = vec![first];
        while batch.len() < COMMANDS_PER_ENTRY_MAX && bytes < ENTRY_BYTES_MAX {
            let Ok(next) = commands.try_recv() else { break };
            bytes += weight(&next.command);
            batch.push(next);
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (commands_of_entry, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let request = Request {
            stamp_ms: clock.now_ms(),
            commands: commands_of_entry,
        };
        // Submitting in order keeps the log in queue order; waiting for the
        // commit happens off this task so entries pipeline.
        let handing = handing.read().await;
        let written = raft.write(request).await;
        drop(handing);
        match written {
            Ok(answer) => {
                tokio::spawn(async move {
                    let result = answer.await.map_err(ProposeError::from);
                    drop(permit);
                    answer_all(replies, result);
                });
            }
            Err(e) => answer_all(replies, Err(e.into())),
        }
    }
}

impl From<WriteError> for ProposeError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NotLeader { leader } => ProposeError::NotLeader { leader },
            WriteError::Unknown(reason) => ProposeError::Unknown(reason),
            WriteError::Stopped => ProposeError::ShuttingDown,
        }
    }
}

fn answer_all(replies: Vec<Reply>, result: Result<(u64, Vec<Outcome>), ProposeError>) {
    match result {
        Ok((index, outcomes)) => {
            debug_assert_eq!(outcomes.len(), replies.len());
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(Committed { outcome, index }));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Roughly how many bytes a command adds to an entry: each message's size
/// by the rule every limit on a message shares, plus an allowance for its
/// encoding in the entry, so that many tiny messages still close one.
fn weight(command: &Command) -> usize {
    const OVERHEAD_BYTES: usize = 64;
    match command.bodies() {
        [] => OVERHEAD_BYTES,
        bodies => bodies
            .iter()
            .map(|m| OVERHEAD_BYTES + raftmq_rules::message_bytes(m))
            .sum(),
    }
}
