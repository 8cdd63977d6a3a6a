//! The public `raftmq.v1.Broker` service.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use raftmq_proto::v1;
use raftmq_proto::v1::broker_server::Broker as BrokerRpc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::shares::{Client, Held};
use super::status::{
    self, commit_timed_out, consumer_detached, internal, invalid, not_leader, propose_failed,
    rejected, stopping,
};
use super::{cluster, convert, exchanges, Gate, Shares};
use crate::access::{Action, Principal};
use crate::broker::{Broker, Committed, Proposer, SessionEvent, Sessions};
use crate::machine::{
    Command, ConsumerId, Outcome, Overflow, ProducerTag, Rejection, Retention, SessionAddr,
    TopicLimits,
};
use crate::raft::Bodies;

/// Publish requests of one stream that may await their commit at once.
const STREAM_REQUESTS_IN_FLIGHT_MAX: usize = 1024;

#[derive(Clone)]
pub struct BrokerService {
    pub(super) broker: Arc<Broker>,
    /// Every request passes it first (authentication, then permission).
    pub(super) gate: Arc<Gate>,
    /// Every write then waits for room in its client's share.
    shares: Arc<Shares>,
}

impl BrokerService {
    pub fn new(broker: Arc<Broker>, gate: Arc<Gate>, shares: Arc<Shares>) -> Self {
        BrokerService {
            broker,
            gate,
            shares,
        }
    }

    /// Waits for room for this request's command in its client's shares;
    /// the room is given back when the returned value drops (after the
    /// answer).
    async fn room<T: prost::Message>(&self, request: &Request<T>, principal: &Principal) -> Held {
        let client = Client::of(request, principal);
        self.shares
            .command(&client, request.get_ref().encoded_len())
            .await
    }

    fn require_leader(&self) -> Result<(), Status> {
        self.broker.leadership().map_err(not_leader)
    }

    /// Proposes one command and waits, within the commit timeout, for its
    /// outcome; a rejection becomes its status.
    pub(super) async fn write(&self, command: Command) -> Result<Committed, Status> {
        self.require_leader()?;
        let committed = tokio::time::timeout(
            self.broker.limits.commit_timeout,
            self.broker.proposer.propose(command),
        )
        .await
        .map_err(|_| commit_timed_out())?
        .map_err(propose_failed)?;
        match committed.outcome {
            Outcome::Rejected(rejection) => Err(rejected(&rejection)),
            _ => Ok(committed),
        }
    }

    /// Checks a publish request at the edge and turns it into a command.
    fn publish_command(
        &self,
        request: v1::PublishRequest,
        principal: &Principal,
    ) -> Result<Command, Status> {
        if !principal.may(Action::Publish, &request.topic) {
            return Err(self
                .gate
                .deny(principal, &format!("publish {:?}", request.topic)));
        }
        self.check_messages(&request.messages)?;
        let producer = (request.producer_id != 0).then_some(ProducerTag {
            id: request.producer_id,
            sequence: request.sequence,
        });
        Ok(Command::Publish {
            producer,
            topic: request.topic,
            messages: request
                .messages
                .into_iter()
                .map(convert::new_message)
                .collect(),
        })
    }

    /// A publish's messages, within the edge's bounds: how many in one
    /// request, and how large each.
    pub(super) fn check_messages(&self, messages: &[v1::Message]) -> Result<(), Status> {
        let limits = &self.broker.limits;
        if messages.len() > limits.messages_per_publish_max {
            return Err(invalid(format!(
                "{} messages in one publish; the limit is {}",
                messages.len(),
                limits.messages_per_publish_max
            )));
        }
        if let Some((index, bytes)) = messages
            .iter()
            .map(raftmq_proto::message_bytes)
            .enumerate()
            .find(|(_, bytes)| *bytes > limits.message_bytes_max)
        {
            return Err(invalid(format!(
                "message {index} is {bytes} bytes; the limit is {} bytes",
                limits.message_bytes_max
            )));
        }
        Ok(())
    }
}

impl BrokerService {
    /// A binding joins an exchange and a topic: managing both is needed.
    async fn allow_binding(&self, request: &Request<v1::BindRequest>) -> Result<Principal, Status> {
        let principal = self
            .gate
            .allow(request, Action::Manage, &request.get_ref().exchange)
            .await?;
        let topic = request
            .get_ref()
            .binding
            .as_ref()
            .map(|binding| binding.topic.as_str())
            .unwrap_or_default();
        if principal.may(Action::Manage, topic) {
            Ok(principal)
        } else {
            Err(self.gate.deny(&principal, &format!("manage {topic:?}")))
        }
    }
}

/// Where a subscription's dead letters go: its topic, or its exchange
/// (the default exchange's target being the topic its key names, or else
/// the topic the letter leaves).
fn dead_letter_targets(request: &v1::SubscribeRequest) -> impl Iterator<Item = &str> {
    let exchange = request
        .dead_letter_exchange
        .as_deref()
        .map(|exchange| match exchange {
            "" => request
                .dead_letter_routing_key
                .as_deref()
                .unwrap_or(&request.topic),
            exchange => exchange,
        });
    request
        .dead_letter_topic
        .as_deref()
        .into_iter()
        .chain(exchange)
}

fn published(outcome: Outcome) -> Result<Vec<v1::Position>, Status> {
    match outcome {
        Outcome::Published(positions) => Ok(positions.into_iter().map(convert::position).collect()),
        other => Err(internal(format!("unexpected publish outcome {other:?}"))),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `stream` until the node begins to stop, then UNAVAILABLE. Without this a
/// graceful stop waits for every client to hang up, which a consumer never
/// does.
fn until_stopping<T: 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    broker: Arc<Broker>,
) -> BoxStream<T> {
    let stopping_rx = broker.stopping.subscribe();
    let state = Some((Box::pin(stream), stopping_rx, broker));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (mut stream, mut stopping_rx, broker) = state?;
        let next = tokio::select! {
            biased;
            Ok(_) = stopping_rx.wait_for(|stopping| *stopping) => None,
            item = stream.next() => Some(item),
        };
        match next {
            None => Some((Err(stopping(broker.leadership().err().flatten())), None)),
            Some(item) => item.map(|item| (item, Some((stream, stopping_rx, broker)))),
        }
    }))
}

#[tonic::async_trait]
impl BrokerRpc for BrokerService {
    type PublishStreamStream = BoxStream<v1::PublishResponse>;
    type SubscribeStream = BoxStream<v1::Delivery>;

    #[tracing::instrument(name = "create_topic", skip_all, fields(topic = %request.get_ref().name))]
    async fn create_topic(
        &self,
        request: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        // A server-named topic (an empty name) is anyone's to make: its
        // name is new, and using it needs the permissions on it.
        let principal = match request.get_ref().name.as_str() {
            "" => self.gate.principal(&request).await?,
            name => self.gate.allow(&request, Action::Manage, name).await?,
        };
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        if request.exclusive && (request.client_id == 0 || request.expires_ms == 0) {
            return Err(invalid(
                "an exclusive topic needs the owner's client_id and expires_ms (its lease)",
            ));
        }
        let retention = match (request.stream, request.max_age_ms) {
            (true, max_age_ms) => Retention::Stream { max_age_ms },
            (false, 0) => Retention::UntilAcked,
            (false, _) => return Err(invalid("max_age_ms applies to a stream")),
        };
        let overflow = match request.overflow() {
            v1::Overflow::RejectPublish => Overflow::RejectPublish,
            v1::Overflow::DropHead => Overflow::DropHead,
        };
        let committed = self
            .write(Command::CreateTopic {
                name: request.name,
                partitions: request.partitions,
                limits: TopicLimits {
                    max_messages: request.max_messages,
                    max_bytes: request.max_bytes,
                    overflow,
                },
                message_ttl_ms: request.message_ttl_ms,
                fail_if_exists: request.fail_if_exists,
                owner: request.exclusive.then_some(request.client_id),
                expires_ms: request.expires_ms,
                max_priority: u8::try_from(request.max_priority).unwrap_or(u8::MAX),
                retention,
            })
            .await?;
        match committed.outcome {
            Outcome::Declared { created, name } => {
                Ok(Response::new(v1::CreateTopicResponse { created, name }))
            }
            other => Err(internal(format!("unexpected declare outcome {other:?}"))),
        }
    }

    #[tracing::instrument(name = "delete_topic", skip_all, fields(topic = %request.get_ref().name))]
    async fn delete_topic(
        &self,
        request: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let name = &request.get_ref().name;
        let principal = self.gate.allow(&request, Action::Manage, name).await?;
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        let committed = self
            .write(Command::DeleteTopic {
                name: request.name,
                if_unused: request.if_unused,
                if_empty: request.if_empty,
            })
            .await?;
        match committed.outcome {
            Outcome::Deleted { messages } => {
                Ok(Response::new(v1::DeleteTopicResponse { messages }))
            }
            other => Err(internal(format!("unexpected delete outcome {other:?}"))),
        }
    }

    async fn delete_subscription(
        &self,
        request: Request<v1::DeleteSubscriptionRequest>,
    ) -> Result<Response<v1::DeleteSubscriptionResponse>, Status> {
        let topic = &request.get_ref().topic;
        let principal = self.gate.allow(&request, Action::Manage, topic).await?;
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        self.write(Command::DeleteSubscription {
            topic: request.topic,
            subscription: request.subscription,
        })
        .await?;
        Ok(Response::new(v1::DeleteSubscriptionResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        let principal = self.gate.principal(&request).await?;
        let mut topics = self.broker.machine.read(|state| state.topics());
        topics.retain(|topic| principal.sees(&topic.name));
        Ok(Response::new(v1::ListTopicsResponse {
            topics: topics.into_iter().map(convert::topic_info).collect(),
        }))
    }

    async fn topic_stats(
        &self,
        request: Request<v1::TopicStatsRequest>,
    ) -> Result<Response<v1::TopicStatsResponse>, Status> {
        let principal = self.gate.principal(&request).await?;
        let wanted = request.into_inner().topic;
        let mut topics = self.broker.machine.read(|state| state.topic_stats());
        topics.retain(|topic| principal.sees(&topic.name));
        if !wanted.is_empty() {
            topics.retain(|topic| topic.name == wanted);
            if topics.is_empty() {
                return Err(rejected(&Rejection::UnknownTopic(wanted)));
            }
        }
        Ok(Response::new(v1::TopicStatsResponse {
            topics: topics.into_iter().map(convert::topic_stats).collect(),
        }))
    }

    async fn declare_exchange(
        &self,
        request: Request<v1::DeclareExchangeRequest>,
    ) -> Result<Response<v1::DeclareExchangeResponse>, Status> {
        let name = &request.get_ref().name;
        let principal = self.gate.allow(&request, Action::Manage, name).await?;
        let _room = self.room(&request, &principal).await;
        exchanges::declare(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_exchange(
        &self,
        request: Request<v1::DeleteExchangeRequest>,
    ) -> Result<Response<v1::DeleteExchangeResponse>, Status> {
        let name = &request.get_ref().name;
        let principal = self.gate.allow(&request, Action::Manage, name).await?;
        let _room = self.room(&request, &principal).await;
        exchanges::delete(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_exchanges(
        &self,
        request: Request<v1::ListExchangesRequest>,
    ) -> Result<Response<v1::ListExchangesResponse>, Status> {
        let principal = self.gate.principal(&request).await?;
        let mut exchanges = self.broker.machine.read(|state| state.exchanges());
        exchanges.retain(|exchange| principal.sees(&exchange.name));
        Ok(Response::new(exchanges::list(exchanges)))
    }

    async fn bind(
        &self,
        request: Request<v1::BindRequest>,
    ) -> Result<Response<v1::BindResponse>, Status> {
        let principal = self.allow_binding(&request).await?;
        let _room = self.room(&request, &principal).await;
        exchanges::bind(self, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn unbind(
        &self,
        request: Request<v1::BindRequest>,
    ) -> Result<Response<v1::BindResponse>, Status> {
        let principal = self.allow_binding(&request).await?;
        let _room = self.room(&request, &principal).await;
        exchanges::bind(self, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn publish_to_exchange(
        &self,
        request: Request<v1::PublishToExchangeRequest>,
    ) -> Result<Response<v1::PublishToExchangeResponse>, Status> {
        // The default exchange reaches the topic the routing key names.
        let target = match request.get_ref().exchange.as_str() {
            "" => &request.get_ref().routing_key,
            exchange => exchange,
        };
        let principal = self.gate.allow(&request, Action::Publish, target).await?;
        let _room = self.room(&request, &principal).await;
        exchanges::publish(self, request.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "publish", skip_all, fields(topic = %request.get_ref().topic, producer = request.get_ref().producer_id))]
    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let topic = &request.get_ref().topic;
        let principal = self.gate.allow(&request, Action::Publish, topic).await?;
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        let request_id = request.request_id;
        let outcome = self
            .write(self.publish_command(request, &principal)?)
            .await?
            .outcome;
        Ok(Response::new(v1::PublishResponse {
            request_id,
            positions: published(outcome)?,
            error: None,
        }))
    }

    async fn publish_stream(
        &self,
        request: Request<Streaming<v1::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        // Authenticated once; each request's topic is checked as it comes.
        let principal = self.gate.principal(&request).await?;
        self.require_leader()?;
        let client = Client::of(&request, &principal);
        let mut incoming = request.into_inner();
        let (submitted_tx, mut submitted) = mpsc::channel(STREAM_REQUESTS_IN_FLIGHT_MAX);
        let (responses_tx, responses) = mpsc::channel(STREAM_REQUESTS_IN_FLIGHT_MAX);
        let service = self.clone();
        // Reader: submits requests in arrival order, so the log keeps the
        // stream's order, without waiting for earlier commits.
        tokio::spawn(async move {
            while let Ok(Some(request)) = incoming.message().await {
                let request_id = request.request_id;
                // Past the share, the stream stops reading: the client's
                // later requests wait in flow control, not in the queue.
                let bytes = prost::Message::encoded_len(&request);
                let room = service.shares.command(&client, bytes).await;
                let answer = match service.publish_command(request, &principal) {
                    Ok(command) => service
                        .broker
                        .proposer
                        .submit(command)
                        .await
                        .map_err(propose_failed),
                    Err(status) => Err(status),
                };
                if submitted_tx.send((request_id, answer, room)).await.is_err() {
                    return;
                }
            }
        });
        // Answerer: awaits each commit in order and answers it. A broken
        // leadership ends the stream: unanswered requests have unknown
        // outcomes and the client resends them to the new leader.
        let commit_timeout = self.broker.limits.commit_timeout;
        tokio::spawn(async move {
            while let Some((request_id, answer, _room)) = submitted.recv().await {
                let outcome = match answer {
                    Ok(pending) => match tokio::time::timeout(commit_timeout, pending).await {
                        Ok(Ok(committed)) => Ok(committed.outcome),
                        Ok(Err(e)) => Err(propose_failed(e)),
                        Err(_) => Err(commit_timed_out()),
                    },
                    Err(status) => Err(status),
                };
                let response = match outcome {
                    // A gap in a producer's sequence ends the stream: the
                    // client resends everything unanswered, in order, from
                    // the gap.
                    Ok(Outcome::Rejected(rejection @ Rejection::OutOfOrder { .. })) => {
                        Err(rejected(&rejection))
                    }
                    Ok(Outcome::Rejected(rejection)) => {
                        Ok(rejected_response(request_id, rejected(&rejection)))
                    }
                    Ok(outcome) => published(outcome).map(|positions| v1::PublishResponse {
                        request_id,
                        positions,
                        error: None,
                    }),
                    // Refused for this request only: the stream goes on.
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::InvalidArgument | tonic::Code::PermissionDenied
                        ) =>
                    {
                        Ok(rejected_response(request_id, status))
                    }
                    Err(status) => Err(status),
                };
                let fatal = response.is_err();
                if responses_tx.send(response).await.is_err() || fatal {
                    return;
                }
            }
        });
        Ok(Response::new(until_stopping(
            ReceiverStream::new(responses),
            self.broker.clone(),
        )))
    }

    #[tracing::instrument(name = "subscribe", skip_all, fields(topic = %request.get_ref().topic, subscription = %request.get_ref().subscription))]
    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let topic = &request.get_ref().topic;
        let principal = self.gate.allow(&request, Action::Consume, topic).await?;
        // Dead letters are publishes to their target.
        for target in dead_letter_targets(request.get_ref()) {
            if !principal.may(Action::Publish, target) {
                return Err(self.gate.deny(&principal, &format!("publish {target:?}")));
            }
        }
        self.require_leader()?;
        let consumer_room = self.shares.consumer(&Client::of(&request, &principal))?;
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        let (session, events) = self.broker.sessions.open(request.prefetch);
        let attach = Command::Attach {
            config: convert::subscription_config(&request),
            topic: request.topic,
            subscription: request.subscription,
            prefetch: request.prefetch,
            session,
            client: request.client_id,
        };
        let consumer = match self.write(attach).await.map(|c| c.outcome) {
            Ok(Outcome::Attached(consumer)) => consumer,
            Ok(other) => {
                self.broker.sessions.close(session);
                return Err(internal(format!("unexpected attach outcome {other:?}")));
            }
            Err(status) => {
                self.broker.sessions.close(session);
                return Err(status);
            }
        };
        tracing::debug!(consumer, ?session, "consumer attached");
        let stream = ConsumerStream {
            events,
            bodies: self.broker.bodies.clone(),
            ended: false,
            _room: consumer_room,
            guard: DetachOnDrop {
                proposer: self.broker.proposer.clone(),
                sessions: self.broker.sessions.clone(),
                session,
                consumer,
                detached: false,
            },
        };
        Ok(Response::new(until_stopping(stream, self.broker.clone())))
    }

    #[tracing::instrument(name = "ack", skip_all, fields(topic = %request.get_ref().topic, subscription = %request.get_ref().subscription))]
    async fn ack(
        &self,
        request: Request<v1::AckRequest>,
    ) -> Result<Response<v1::AckResponse>, Status> {
        let topic = &request.get_ref().topic;
        let principal = self.gate.allow(&request, Action::Consume, topic).await?;
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        let committed = self
            .write(Command::Ack {
                topic: request.topic,
                subscription: request.subscription,
                positions: convert::positions(&request.positions),
            })
            .await?;
        Ok(Response::new(v1::AckResponse {
            applied_at: committed.index,
        }))
    }

    #[tracing::instrument(name = "nack", skip_all, fields(topic = %request.get_ref().topic, subscription = %request.get_ref().subscription))]
    async fn nack(
        &self,
        request: Request<v1::NackRequest>,
    ) -> Result<Response<v1::NackResponse>, Status> {
        let topic = &request.get_ref().topic;
        let principal = self.gate.allow(&request, Action::Consume, topic).await?;
        let _room = self.room(&request, &principal).await;
        let request = request.into_inner();
        self.write(Command::Nack {
            topic: request.topic,
            subscription: request.subscription,
            positions: convert::positions(&request.positions),
            requeue: !request.reject,
            delay_ms: request.delay_ms,
        })
        .await?;
        Ok(Response::new(v1::NackResponse {}))
    }

    async fn cluster_status(
        &self,
        request: Request<v1::ClusterStatusRequest>,
    ) -> Result<Response<v1::ClusterStatusResponse>, Status> {
        self.gate.principal(&request).await?;
        let commit_index = self
            .broker
            .log
            .committed_index()
            .map_err(|e| internal(format!("reading commit index: {e}")))?;
        Ok(Response::new(convert::cluster_status(
            self.broker.raft.status(),
            self.broker.raft.members(),
            commit_index,
            self.broker.leader_history.leaderless(),
        )))
    }

    async fn transfer_leader(
        &self,
        request: Request<v1::TransferLeaderRequest>,
    ) -> Result<Response<v1::TransferLeaderResponse>, Status> {
        self.gate.admin(&request).await?;
        cluster::transfer_leader(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn add_node(
        &self,
        request: Request<v1::AddNodeRequest>,
    ) -> Result<Response<v1::AddNodeResponse>, Status> {
        self.gate.admin(&request).await?;
        cluster::add_node(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_node(
        &self,
        request: Request<v1::RemoveNodeRequest>,
    ) -> Result<Response<v1::RemoveNodeResponse>, Status> {
        self.gate.admin(&request).await?;
        cluster::remove_node(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn take_snapshot(
        &self,
        request: Request<v1::TakeSnapshotRequest>,
    ) -> Result<Response<v1::TakeSnapshotResponse>, Status> {
        self.gate.admin(&request).await?;
        let started = std::time::Instant::now();
        let index = self
            .broker
            .raft
            .take_snapshot(SNAPSHOT_WAIT_MAX)
            .await
            .map_err(|e| status::snapshot_failed(&e))?;
        Ok(Response::new(v1::TakeSnapshotResponse {
            snapshot_index: index,
            took_ms: started.elapsed().as_millis() as u64,
        }))
    }
}

/// Longest a `TakeSnapshot` waits for the snapshot to be written.
const SNAPSHOT_WAIT_MAX: Duration = Duration::from_secs(60);

fn rejected_response(request_id: u64, status: Status) -> v1::PublishResponse {
    v1::PublishResponse {
        request_id,
        positions: Vec::new(),
        error: Some(v1::Error {
            code: status.code() as i32,
            message: status.message().to_string(),
        }),
    }
}

/// A consumer's delivery stream. It ends when the state machine detaches
/// the consumer (leader change) or its session breaks.
struct ConsumerStream {
    events: mpsc::Receiver<SessionEvent>,
    /// Each delivery's body is read here as it is sent.
    bodies: Arc<Bodies>,
    ended: bool,
    /// The consumer's place in its client's shares, while it is attached.
    _room: Held,
    guard: DetachOnDrop,
}

impl Stream for ConsumerStream {
    type Item = Result<v1::Delivery, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(SessionEvent::Deliver(delivery))) => {
                match self.bodies.message(&delivery.message, delivery.offset) {
                    Ok(message) => Poll::Ready(Some(Ok(convert::delivery(delivery, message)))),
                    Err(e) => {
                        // The consumer's messages return when its stream
                        // ends; they stay retained, never lost.
                        tracing::error!(partition = delivery.partition, offset = delivery.offset, error = %e, "a delivery's body is unreadable");
                        self.ended = true;
                        Poll::Ready(Some(Err(status::body_unreadable(&e))))
                    }
                }
            }
            Poll::Ready(closed) => {
                self.ended = true;
                self.guard.detached = matches!(closed, Some(SessionEvent::Closed));
                Poll::Ready(Some(Err(consumer_detached())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Detaches the consumer when its stream goes away (the client left or the
/// connection broke), so its in-flight messages return for redelivery.
struct DetachOnDrop {
    proposer: Proposer,
    sessions: Arc<Sessions>,
    session: SessionAddr,
    consumer: ConsumerId,
    /// The state machine detached it already.
    detached: bool,
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.sessions.close(self.session);
        if self.detached {
            return;
        }
        let proposer = self.proposer.clone();
        let consumer = self.consumer;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = proposer.propose(Command::Detach { consumer }).await {
                    tracing::debug!(consumer, error = %e, "detach not proposed; the next leader detaches it");
                }
            });
        }
    }
}
