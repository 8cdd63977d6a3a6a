//! `Consumer`: a subscription's deliveries as one stream that survives
//! leader changes.

use std::time::Duration;

use tokio::time::Instant;

use raftmq_proto::v1 as proto;
use tonic::{Response, Status, Streaming};

use crate::backoff::Backoff;
use crate::client::Route;
use crate::recovery::{Recovery, Restart};
use crate::sequence::SequenceGaps;
use crate::{Acked, Client, ClientError, Delivery, NackOptions, Position};

/// A stream that stayed open this long was healthy, even if idle: its end
/// starts a fresh recovery budget instead of eating the current one.
const STREAM_SETTLED_AFTER: Duration = Duration::from_secs(5);

/// Receives a subscription's messages.
///
/// The server ends a consumer's stream when the leader changes or the node
/// stops; `next` then re-subscribes through the new leader by itself, and
/// by default keeps trying through an outage of any length
/// (`SubscribeOptions::give_up_after`). Unacked messages come back with
/// `redelivered` set, so processing must tolerate repeats. After `next` has
/// returned an error the consumer is finished and returns `None`; subscribe
/// again to start over.
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    topic: String,
    subscription: String,
    /// What every (re-)subscribe sends.
    request: proto::SubscribeRequest,
    stream: Option<Attachment>,
    recovery: Recovery,
    /// The re-subscribe planned after the last break, kept until it
    /// succeeds.
    restart: Option<Restart>,
    gaps: SequenceGaps,
    finished: bool,
}

/// The current Subscribe stream and where it is attached.
#[derive(Debug)]
struct Attachment {
    address: String,
    opened: Instant,
    inbound: Streaming<proto::Delivery>,
}

impl Consumer {
    pub(crate) async fn attach(
        client: Client,
        request: proto::SubscribeRequest,
        give_up_after: Option<Duration>,
    ) -> Result<Consumer, ClientError> {
        let options = client.options();
        let recovery = Recovery::new(
            give_up_after,
            options.retry_deadline,
            Backoff::new(options.backoff_initial, options.backoff_max),
        );
        let deadline = Instant::now() + options.retry_deadline;
        let mut consumer = Consumer {
            client,
            topic: request.topic.clone(),
            subscription: request.subscription.clone(),
            request,
            stream: None,
            recovery,
            restart: None,
            gaps: SequenceGaps::default(),
            finished: false,
        };
        consumer.stream = Some(consumer.open(deadline).await?);
        Ok(consumer)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Sequence numbers skipped so far: deliveries lost between the leader
    /// and this consumer. Zero in a healthy cluster.
    pub fn gaps(&self) -> u64 {
        self.gaps.missing()
    }

    /// The next delivery, re-subscribing through the leader whenever the
    /// stream ends. `None` once the consumer has reported an error.
    ///
    /// Cancel-safe: dropping the future (for example in `select!` or under
    /// a timeout) loses no delivery.
    pub async fn next(&mut self) -> Option<Result<Delivery, ClientError>> {
        if self.finished {
            return None;
        }
        // Each turn waits for a delivery or, after a break, for the planned
        // restart (backed off); `recovery` ends the loop when its budget is
        // spent.
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => match self.reattach().await {
                    Ok(Some(stream)) => self.stream.insert(stream),
                    Ok(None) => continue,
                    Err(error) => return self.finish(error),
                },
            };
            match stream.inbound.message().await {
                Ok(Some(delivery)) => {
                    self.recovery.progress();
                    self.gaps.observe(delivery.consumer_id, delivery.sequence);
                    return Some(Ok(delivery.into()));
                }
                Ok(None) => self.detach(None),
                Err(status) => self.detach(Some(&status)),
            }
        }
    }

    /// Acknowledges deliveries: pass `&[Delivery]`, `&Vec<Delivery>`, or
    /// positions. Goes through the leader like every write; idempotent.
    pub async fn ack(
        &self,
        positions: impl IntoIterator<Item = impl Into<Position>>,
    ) -> Result<Acked, ClientError> {
        self.client
            .ack(&self.topic, &self.subscription, positions)
            .await
    }

    /// Returns deliveries for redelivery (to this or another consumer).
    pub async fn nack(
        &self,
        positions: impl IntoIterator<Item = impl Into<Position>>,
    ) -> Result<(), ClientError> {
        self.client
            .nack(&self.topic, &self.subscription, positions)
            .await
    }

    /// Returns deliveries after a delay, or rejects them to the dead-letter
    /// topic.
    pub async fn nack_with(
        &self,
        positions: impl IntoIterator<Item = impl Into<Position>>,
        options: NackOptions,
    ) -> Result<(), ClientError> {
        self.client
            .nack_with(&self.topic, &self.subscription, positions, options)
            .await
    }

    /// Re-subscribes after a break. The restart is planned once per break:
    /// a caller that cancels `next` (a timeout around it) resumes the same
    /// restart on its next call. Planning anew on each call spent the whole
    /// recovery budget in well under a second of backoff, and the consumer
    /// gave up during a brief leader stall.
    ///
    /// `None`: this attempt found no leader; the next one is planned anew.
    async fn reattach(&mut self) -> Result<Option<Attachment>, ClientError> {
        let restart = match self.restart {
            Some(planned) => planned,
            None => *self.restart.insert(self.recovery.on_break(Instant::now())?),
        };
        tokio::time::sleep_until(restart.not_before).await;
        let opened = self.open(restart.deadline).await;
        self.restart = None;
        match opened {
            Ok(attachment) => Ok(Some(attachment)),
            Err(error @ ClientError::NoLeader { .. }) => {
                let outage = self.recovery.elapsed(Instant::now());
                tracing::warn!(topic = %self.topic, subscription = %self.subscription, ?outage, %error, "no leader yet; the consumer keeps trying");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    async fn open(&self, deadline: Instant) -> Result<Attachment, ClientError> {
        let request = self.request.clone();
        let attached = self
            .client
            .call(Route::Leader, deadline, |mut broker| {
                let request = request.clone();
                async move { broker.subscribe(request).await.map(Response::into_inner) }
            })
            .await?;
        tracing::debug!(address = %attached.address, topic = %self.topic, "subscribed");
        Ok(Attachment {
            address: attached.address,
            opened: Instant::now(),
            inbound: attached.value,
        })
    }

    /// Forgets the ended stream; the next turn of `next` re-subscribes.
    fn detach(&mut self, cause: Option<&Status>) {
        if let Some(stream) = self.stream.take() {
            tracing::debug!(address = %stream.address, cause = ?cause.map(Status::message), "subscription stream ended");
            if stream.opened.elapsed() >= STREAM_SETTLED_AFTER {
                self.recovery.progress();
            }
            self.client.stream_ended(&stream.address, cause);
        }
    }

    fn finish(&mut self, error: ClientError) -> Option<Result<Delivery, ClientError>> {
        self.finished = true;
        self.stream = None;
        Some(Err(error))
    }
}
