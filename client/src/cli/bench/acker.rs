//! Acks sent from a task of their own, several in flight, so that a
//! consumer's loop never waits for a commit: awaited in the loop, each ack
//! held back every delivery behind it for a Raft round trip, and the e2e
//! run counted that wait as publish-to-delivery latency.

use futures::StreamExt;
use raftmq_client::{Client, Position};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where a consumer's loop hands batches of positions to ack.
pub(crate) struct Acker {
    batches: mpsc::Sender<Vec<Position>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Acker {
    /// Acks on `subscription` of `topic`, at most `in_flight` requests at
    /// once; `send` waits while that many are queued.
    pub(crate) fn start(
        client: &Client,
        topic: &str,
        subscription: &str,
        in_flight: usize,
    ) -> Acker {
        let (batches, queued) = mpsc::channel::<Vec<Position>>(in_flight);
        let (client, topic, subscription) =
            (client.clone(), topic.to_string(), subscription.to_string());
        let task = tokio::spawn(async move {
            tokio_stream::wrappers::ReceiverStream::new(queued)
                .map(|batch| {
                    let (client, topic, subscription) = (&client, &topic, &subscription);
                    async move { client.ack(topic, subscription, batch).await }
                })
                .buffer_unordered(in_flight)
                .fold(Ok(()), |all, acked| async move { all.and(acked.map(drop)) })
                .await
                .map_err(anyhow::Error::from)
        });
        Acker { batches, task }
    }

    pub(crate) async fn send(&self, batch: Vec<Position>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.batches
            .send(batch)
            .await
            .map_err(|_| anyhow::anyhow!("the acker stopped"))
    }

    /// Waits until every ack sent is answered; the first error, if any.
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        drop(self.batches);
        self.task.await?
    }
}
