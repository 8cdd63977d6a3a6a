//! `Producer`: pipelined publishing over one PublishStream, with confirms.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use raftmq_proto::v1 as proto;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::batch;
use crate::pipeline::{Command, Pending, Pipeline};
use crate::{Client, ClientError, Message, Position, ProducerOptions};

/// Publishes to one topic through a background task that owns the stream.
///
/// `send` only enqueues; the task packs whatever is queued into requests (no
/// linger: a lone message goes out at once, a backlog goes out in full
/// batches) and keeps up to `window` of them unanswered. When the stream
/// breaks it finds the leader again and re-sends every unanswered request in
/// the original order, so the first occurrences of messages keep their
/// per-key order. A re-sent request that was already stored is answered
/// with its first positions (the producer id and sequence make re-sends
/// idempotent), so each message is stored once. A batch
/// the leader refuses fails its confirms (nothing was stored) and is not
/// retried, since retrying it behind later batches would break their order.
///
/// Dropping the producer lets the task finish what is in flight; `close`
/// also waits for it.
#[derive(Debug)]
pub struct Producer {
    topic: String,
    request_bytes_max: usize,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// Resolves to the position of one sent message once the leader has
/// committed it, or to the error that settled its fate.
///
/// `ClientError::Rpc` means the batch was rejected (nothing stored);
/// `NoLeader`/`StreamBroken` mean the outcome is unknown.
#[derive(Debug)]
#[must_use = "a confirm tells whether the message was stored"]
pub struct Confirm {
    receiver: oneshot::Receiver<Result<Position, ClientError>>,
}

impl Future for Confirm {
    type Output = Result<Position, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ClientError::ProducerClosed)))
    }
}

impl Producer {
    pub(crate) fn start(client: Client, topic: &str, options: ProducerOptions) -> Producer {
        // The queue holds one full batch: enough for the task to pack a
        // request while the caller keeps sending, small enough that a full
        // window stops `send` almost at once.
        let (commands, receiver) = mpsc::channel(options.batch_max);
        let request_bytes_max = options.request_bytes_max;
        let pipeline = Pipeline::new(client, topic, options, receiver);
        Producer {
            topic: topic.to_string(),
            request_bytes_max,
            commands,
            task: tokio::spawn(pipeline.run()),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Enqueues a message, waiting for room while the window is full
    /// (back-pressure), and returns its confirm. Await the confirm to learn
    /// the outcome; dropping it does not cancel the send.
    pub async fn send(&self, message: Message) -> Result<Confirm, ClientError> {
        let message = proto::Message::from(message);
        let bytes = batch::message_bytes(&message);
        let bytes_max = self
            .request_bytes_max
            .saturating_sub(batch::envelope_bytes(&self.topic));
        if bytes > bytes_max {
            return Err(ClientError::MessageTooLarge { bytes, bytes_max });
        }
        let (confirm, receiver) = oneshot::channel();
        let pending = Pending {
            message,
            bytes,
            confirm,
        };
        self.commands
            .send(Command::Publish(pending))
            .await
            .map_err(|_| ClientError::ProducerClosed)?;
        Ok(Confirm { receiver })
    }

    /// Waits until every message sent before this call has an outcome (its
    /// confirm is resolved, successfully or not).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, receiver) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .await
            .map_err(|_| ClientError::ProducerClosed)?;
        receiver.await.map_err(|_| ClientError::ProducerClosed)
    }

    /// Flushes, then stops the background task and waits for it.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        drop(self.commands);
        self.task.await.map_err(|_| ClientError::ProducerClosed)
    }
}
