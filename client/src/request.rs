//! Request-reply (RabbitMQ's RPC pattern): a `Requester` keeps one
//! exclusive, server-named reply topic and matches each reply to its
//! request by correlation id, so that any number of concurrent requests
//! share it; `Client::reply` answers a request from the serving side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{
    Client, ClientError, Consumer, Delivery, Message, Position, Properties, SubscribeOptions,
    SubscriptionMode, TopicOptions,
};

/// How long a reply topic outlives its consumer: long enough for the
/// consumer to re-subscribe after a leader change, short enough that the
/// topics of requesters that went away do not linger.
pub const REPLY_LEASE: Duration = Duration::from_secs(10);
/// Requests one requester may have waiting for their replies.
pub const PENDING_MAX: usize = 65_536;
/// Replies held unacknowledged at once.
const REPLY_PREFETCH: u32 = 1_000;
/// Most replies acknowledged in one request.
const ACKS_PER_REQUEST_MAX: usize = 1_000;
/// The reply topic's one subscription.
const REPLIES: &str = "replies";

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Delivery>>>>;

/// Sends requests and waits for their replies over one reply topic,
/// exclusive to this client and deleted `REPLY_LEASE` after the requester
/// is dropped (its consumer gone). Cheap to share behind an `Arc`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct Requester {
    client: Client,
    reply_to: String,
    pending: Pending,
    next: AtomicU64,
    /// Reads replies and hands them to their requests; aborted on drop.
    reader: JoinHandle<()>,
    /// Acknowledges the replies read, in batches; ends with the reader.
    acker: JoinHandle<()>,
}

impl Client {
    /// A requester with a reply topic of its own (see `Requester`).
    pub async fn requester(&self) -> Result<Requester, ClientError> {
        let options = TopicOptions {
            exclusive: true,
            expires: Some(REPLY_LEASE),
            ..TopicOptions::default()
        };
        let reply_to = self.declare_server_named(1, options).await?;
        let subscribe = SubscribeOptions {
            prefetch: REPLY_PREFETCH,
            mode: Some(SubscriptionMode::Shared),
            ..SubscribeOptions::default()
        };
        let consumer = self.subscribe_with(&reply_to, REPLIES, subscribe).await?;
        let pending = Pending::default();
        let (acks_tx, acks) = mpsc::channel(REPLY_PREFETCH as usize);
        let reader = tokio::spawn(read_replies(consumer, pending.clone(), acks_tx));
        let acker = tokio::spawn(ack_replies(self.clone(), reply_to.clone(), acks));
        Ok(Requester {
            client: self.clone(),
            reply_to,
            pending,
            next: AtomicU64::new(0),
            reader,
            acker,
        })
    }

    /// Answers a request: publishes `message` to the request's `reply_to`
    /// with its `correlation_id`. A request without `reply_to` is refused.
    pub async fn reply(&self, request: &Delivery, message: Message) -> Result<(), ClientError> {
        let asked = request.properties.as_deref();
        let Some(reply_to) = asked.and_then(|p| p.reply_to.clone()) else {
            return Err(ClientError::InvalidOptions {
                reason: "the request has no reply_to".into(),
            });
        };
        let correlation_id = asked.and_then(|p| p.correlation_id.clone());
        let message = with_properties(message, |p| p.correlation_id = correlation_id);
        self.publish(&reply_to, vec![message]).await?;
        Ok(())
    }
}

impl Requester {
    /// The reply topic's name.
    pub fn reply_to(&self) -> &str {
        &self.reply_to
    }

    /// Publishes `message` to `topic` with this requester's `reply_to` and
    /// a fresh `correlation_id`, and waits up to `timeout` for the reply.
    /// A reply that comes after the timeout is dropped.
    pub async fn request(
        &self,
        topic: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Delivery, ClientError> {
        let id = format!(
            "{:x}-{}",
            self.client.id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (answer, reply) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= PENDING_MAX {
                return Err(ClientError::RequestsPending { max: PENDING_MAX });
            }
            pending.insert(id.clone(), answer);
        }
        let message = with_properties(message, |p| {
            p.correlation_id = Some(id.clone());
            p.reply_to = Some(self.reply_to.clone());
        });
        let published = self.client.publish(topic, vec![message]).await;
        let outcome = match published {
            Err(error) => Err(error),
            Ok(_) => match tokio::time::timeout(timeout, reply).await {
                Ok(Ok(delivery)) => Ok(delivery),
                Ok(Err(_)) => Err(ClientError::RepliesClosed),
                Err(_) => Err(ClientError::NoReply { waited: timeout }),
            },
        };
        lock(&self.pending).remove(&id);
        outcome
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        self.reader.abort();
        self.acker.abort();
    }
}

/// Hands each reply to the request waiting for it and queues its ack;
/// ends when the consumer does (its pending requests then fail).
async fn read_replies(mut consumer: Consumer, pending: Pending, acks: mpsc::Sender<Position>) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let position = delivery.position();
        let id = delivery
            .properties
            .as_deref()
            .and_then(|p| p.correlation_id.clone());
        let waiting = id.and_then(|id| lock(&pending).remove(&id));
        if let Some(answer) = waiting {
            let _ = answer.send(delivery);
        }
        if acks.send(position).await.is_err() {
            break;
        }
    }
    lock(&pending).clear();
}

/// Acknowledges replies in batches of what has queued up.
async fn ack_replies(client: Client, reply_to: String, mut acks: mpsc::Receiver<Position>) {
    let mut batch = Vec::with_capacity(ACKS_PER_REQUEST_MAX);
    while acks.recv_many(&mut batch, ACKS_PER_REQUEST_MAX).await > 0 {
        if let Err(error) = client.ack(&reply_to, REPLIES, batch.drain(..)).await {
            // Unacked replies come back after a re-subscribe; with no
            // request waiting any more, they are acked and dropped then.
            tracing::warn!(%error, topic = %reply_to, "acking replies");
        }
    }
}

/// `message` with its properties (none yet: the defaults) changed by `set`.
fn with_properties(mut message: Message, set: impl FnOnce(&mut Properties)) -> Message {
    set(message.properties.get_or_insert_with(Default::default));
    message
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
