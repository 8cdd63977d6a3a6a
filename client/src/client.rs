//! `Client`: the cluster-aware handle every other part of the library uses to
//! reach the leader.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use raftmq_proto::v1 as proto;
use raftmq_proto::v1::broker_client::BrokerClient;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};

use crate::backoff::Backoff;
use crate::connector::{Connector, TcpConnector};
use crate::error::describe;
use crate::routing::{Decision, Failure, Router};
use crate::{
    ClientError, ClientOptions, ClusterStatus, Consumer, Declared, DeleteOptions, Message,
    NackOptions, NodeStatus, Position, Producer, ProducerOptions, SnapshotTaken, SubscribeOptions,
    TlsOptions, Token, TopicInfo, TopicOptions, TopicStats,
};

/// Attempts one operation may make, on top of its deadline: with the
/// smallest backoff and instant failures the deadline alone would allow
/// thousands.
const ATTEMPTS_MAX: u32 = 200;
/// Cached connections; leader hints may name addresses outside the seeds, so
/// the cache is capped and simply emptied when full (channels are lazy and
/// cheap to rebuild).
const CHANNELS_MAX: usize = 64;
/// Positions per Ack or Nack request, to stay far below the server's 4 MiB
/// message limit however many deliveries the caller acks at once.
const ACK_POSITIONS_MAX: usize = 8192;
/// Largest response the client accepts: a delivery carries one whole message,
/// which may be nearly as large as a publish request.
const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A handle on a raftmq cluster.
///
/// Cheap to clone (an `Arc` inside); clones share connections and the
/// knowledge of who leads. Writes go to the leader: the client remembers the
/// last one it reached, follows a follower's redirect, and on UNAVAILABLE or
/// a transport failure moves to the next seed with exponential backoff,
/// within `ClientOptions::retry_deadline`.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    seeds: Vec<String>,
    options: ClientOptions,
    connector: Arc<dyn Connector>,
    producer_ids: ProducerIds,
    /// `Client::id`.
    id: u64,
    channels: Mutex<BTreeMap<String, Channel>>,
    leader: Mutex<Option<String>>,
    /// Where the next operation starts rotating, so that consecutive
    /// operations do not all hammer the first seed while it is down.
    rotation: AtomicUsize,
}

/// Whether a call must reach the leader, or any node's answer will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Leader,
    AnyNode,
}

/// A call's result together with the node that gave it, so that a stream's
/// owner knows whom to blame when the stream breaks.
pub(crate) struct Attached<T> {
    pub value: T,
    pub address: String,
}

impl Client {
    /// A client over `seeds` ("host:port" each) with default options.
    ///
    /// Connections are opened lazily, so this succeeds even while every node
    /// is down; it fails only on an empty or malformed address list.
    pub fn connect(seeds: Vec<String>) -> Result<Client, ClientError> {
        Client::connect_with(seeds, ClientOptions::default())
    }

    pub fn connect_with(seeds: Vec<String>, options: ClientOptions) -> Result<Client, ClientError> {
        Client::connect_via(seeds, options, Arc::new(TcpConnector), rand::random())
    }

    /// A client that reaches nodes through `connector` (the simulation's
    /// network, say) instead of TCP, and draws its producer ids from `seed`
    /// (which must differ between clients).
    pub fn connect_via(
        seeds: Vec<String>,
        options: ClientOptions,
        connector: Arc<dyn Connector>,
        seed: u64,
    ) -> Result<Client, ClientError> {
        options.validate()?;
        let seeds: Vec<String> = seeds
            .iter()
            .map(|seed| normalize(seed))
            .filter(|seed| !seed.is_empty())
            .collect();
        if seeds.is_empty() {
            return Err(ClientError::NoSeeds);
        }
        for seed in &seeds {
            endpoint(seed, &options)?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                seeds,
                options,
                connector,
                producer_ids: ProducerIds {
                    base: splitmix64(seed),
                    next: AtomicU64::new(0),
                },
                id: splitmix64(!seed).max(1),
                channels: Mutex::new(BTreeMap::new()),
                leader: Mutex::new(None),
                rotation: AtomicUsize::new(0),
            }),
        })
    }

    /// This client's id, the same for all its requests (never 0): an
    /// exclusive topic it declares admits only its consumers.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// A fresh idempotent-producer id.
    pub(crate) fn producer_id(&self) -> u64 {
        self.inner.producer_ids.next()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub fn seeds(&self) -> &[String] {
        &self.inner.seeds
    }

    /// The leader this client last reached, if it still believes in it.
    pub fn leader(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    /// Declares a topic: creates it, or succeeds if it exists with the same
    /// settings. Other settings fail with FAILED_PRECONDITION naming the
    /// first that differs.
    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<Declared, ClientError> {
        self.create_topic_with(name, partitions, TopicOptions::default())
            .await
    }

    /// Declares a topic with retention bounds (publishes past them are
    /// refused with RESOURCE_EXHAUSTED until consumers ack), a TTL for its
    /// messages and a lifetime. With `fail_if_exists`, a retry after a
    /// lost answer may report ALREADY_EXISTS for a topic this very call
    /// created.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        options: TopicOptions,
    ) -> Result<Declared, ClientError> {
        if name.is_empty() {
            return Err(ClientError::InvalidOptions {
                reason: "a topic needs a name; declare_server_named gives one".into(),
            });
        }
        let response = self.declare_topic(name, partitions, options).await?;
        Ok(if response.created {
            Declared::Created
        } else {
            Declared::Existed
        })
    }

    /// Declares a topic the server names (AMQP's server-named queue), for
    /// example a reply topic with `exclusive` and `expires` set: its name.
    /// A retry after a lost answer declares a second one, which expires
    /// unused if it has `expires`.
    pub async fn declare_server_named(
        &self,
        partitions: u32,
        options: TopicOptions,
    ) -> Result<String, ClientError> {
        Ok(self.declare_topic("", partitions, options).await?.name)
    }

    async fn declare_topic(
        &self,
        name: &str,
        partitions: u32,
        options: TopicOptions,
    ) -> Result<proto::CreateTopicResponse, ClientError> {
        let expires_ms = match options.expires {
            None => 0,
            Some(expires) => u32::try_from(expires.as_millis())
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| ClientError::InvalidOptions {
                    reason: format!("expires {expires:?}: use 1 ms to 49 days"),
                })?,
        };
        let request = proto::CreateTopicRequest {
            name: name.to_string(),
            partitions,
            max_messages: options.max_messages,
            max_bytes: options.max_bytes,
            message_ttl_ms: options.message_ttl_ms,
            fail_if_exists: options.fail_if_exists,
            exclusive: options.exclusive,
            expires_ms,
            client_id: self.id(),
            overflow: options.overflow as i32,
            max_priority: options.max_priority,
            stream: options.stream,
            max_age_ms: options.max_age.map_or(0, |age| age.as_millis() as u64),
        };
        self.call_unary(Route::Leader, request, |mut broker, request| async move {
            broker.create_topic(request).await
        })
        .await
    }

    /// Deletes a topic with its subscriptions and retained messages (their
    /// consumers' streams end): the messages it still retained. A retry
    /// after a lost answer may report NOT_FOUND for a topic this very call
    /// deleted.
    pub async fn delete_topic(
        &self,
        name: &str,
        options: DeleteOptions,
    ) -> Result<u64, ClientError> {
        let request = proto::DeleteTopicRequest {
            name: name.to_string(),
            if_unused: options.if_unused,
            if_empty: options.if_empty,
        };
        let response = self
            .call_unary(Route::Leader, request, |mut broker, request| async move {
                broker.delete_topic(request).await
            })
            .await?;
        Ok(response.messages)
    }

    /// Deletes a subscription: its consumers' streams end, and messages
    /// only it had not acked are dropped.
    pub async fn delete_subscription(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<(), ClientError> {
        let request = proto::DeleteSubscriptionRequest {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
        };
        self.call_unary(Route::Leader, request, |mut broker, request| async move {
            broker.delete_subscription(request).await
        })
        .await?;
        Ok(())
    }

    /// Lists topics, from the leader when it is known (fresh), else from any
    /// node that answers (possibly a little behind).
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let response = self
            .call_unary(
                Route::AnyNode,
                proto::ListTopicsRequest {},
                |mut broker, request| async move { broker.list_topics(request).await },
            )
            .await?;
        Ok(response.topics.into_iter().map(TopicInfo::from).collect())
    }

    /// Depths and counts of every topic, or of `topic` only, as one node
    /// has applied them.
    pub async fn topic_stats(&self, topic: Option<&str>) -> Result<Vec<TopicStats>, ClientError> {
        let request = proto::TopicStatsRequest {
            topic: topic.unwrap_or_default().to_string(),
        };
        let response = self
            .call_unary(Route::AnyNode, request, |mut broker, request| async move {
                broker.topic_stats(request).await
            })
            .await?;
        Ok(response.topics.into_iter().map(TopicStats::from).collect())
    }

    /// Asks one node for its view of the cluster, once, without retrying
    /// elsewhere: the point is to see that particular node.
    pub async fn cluster_status(&self, address: &str) -> Result<ClusterStatus, ClientError> {
        let timeout = self.inner.options.rpc_timeout;
        let mut broker = self.broker(&normalize(address))?;
        let request = unary(proto::ClusterStatusRequest {}, timeout);
        answer_within(timeout, broker.cluster_status(request)).await
    }

    /// Asks one node to take a snapshot now, and waits until it is written
    /// (a node gives it a minute at most).
    pub async fn take_snapshot(&self, address: &str) -> Result<SnapshotTaken, ClientError> {
        const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(65);
        let mut broker = self.broker(&normalize(address))?;
        let request = unary(proto::TakeSnapshotRequest {}, SNAPSHOT_TIMEOUT);
        answer_within(SNAPSHOT_TIMEOUT, broker.take_snapshot(request)).await
    }

    /// Asks every seed at once; one answer per seed, in seed order, errors
    /// included, so that a dead node shows up instead of hiding the rest.
    pub async fn cluster_status_all(&self) -> Vec<NodeStatus> {
        let asks = self.inner.seeds.iter().map(|address| async move {
            NodeStatus {
                address: address.clone(),
                status: self.cluster_status(address).await,
            }
        });
        futures::future::join_all(asks).await
    }

    /// Publishes a batch in one unary request and returns each message's
    /// position, in order.
    ///
    /// Retried through the leader on failure. The call is an idempotent
    /// producer of its own, so a retry after a lost answer (leader crash
    /// after commit) is confirmed with the first attempt's positions instead
    /// of being stored twice.
    pub async fn publish(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<Position>, ClientError> {
        let count = messages.len();
        // A producer id of its own makes this call's retries land once.
        let request = proto::PublishRequest {
            topic: topic.to_string(),
            messages: messages.into_iter().map(proto::Message::from).collect(),
            request_id: 0,
            producer_id: self.producer_id(),
            sequence: 0,
        };
        let timeout = self.inner.options.rpc_timeout;
        let attached = self
            .call(Route::Leader, self.deadline(), |mut broker| {
                let request = unary(request.clone(), timeout);
                async move { broker.publish(request).await.map(Response::into_inner) }
            })
            .await?;
        let response = attached.value;
        if let Some(error) = response.error {
            return Err(ClientError::Rpc {
                code: tonic::Code::from_i32(error.code),
                message: error.message,
            });
        }
        if response.positions.len() != count {
            return Err(ClientError::Protocol {
                reason: format!(
                    "{} positions confirm {count} messages",
                    response.positions.len()
                ),
            });
        }
        Ok(response.positions.into_iter().map(Position::from).collect())
    }

    /// Acknowledges messages, by position or by `&Delivery`: for example
    /// `client.ack("t", "s", &deliveries)`. Idempotent, so retries are safe.
    pub async fn ack(
        &self,
        topic: &str,
        subscription: &str,
        positions: impl IntoIterator<Item = impl Into<Position>>,
    ) -> Result<Acked, ClientError> {
        let timeout = self.inner.options.rpc_timeout;
        let mut acked = Acked { applied_at: 0 };
        for chunk in chunks(positions) {
            let request = proto::AckRequest {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
                positions: chunk,
            };
            let answer = self
                .call(Route::Leader, self.deadline(), |mut broker| {
                    let request = unary(request.clone(), timeout);
                    async move { broker.ack(request).await.map(Response::into_inner) }
                })
                .await?;
            acked.applied_at = acked.applied_at.max(answer.value.applied_at);
        }
        Ok(acked)
    }

    /// Hands messages back to the subscription for redelivery now.
    pub async fn nack(
        &self,
        topic: &str,
        subscription: &str,
        positions: impl IntoIterator<Item = impl Into<Position>>,
    ) -> Result<(), ClientError> {
        self.nack_with(topic, subscription, positions, NackOptions::default())
            .await
    }

    /// Hands messages back for redelivery after a delay, or rejects them to
    /// the dead-letter topic.
    pub async fn nack_with(
        &self,
        topic: &str,
        subscription: &str,
        positions: impl IntoIterator<Item = impl Into<Position>>,
        options: NackOptions,
    ) -> Result<(), ClientError> {
        let timeout = self.inner.options.rpc_timeout;
        for chunk in chunks(positions) {
            let request = proto::NackRequest {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
                positions: chunk,
                reject: options.reject,
                delay_ms: options.delay.as_millis() as u64,
            };
            self.call(Route::Leader, self.deadline(), |mut broker| {
                let request = unary(request.clone(), timeout);
                async move { broker.nack(request).await.map(Response::into_inner) }
            })
            .await?;
        }
        Ok(())
    }

    /// A pipelined producer for `topic` with default options. Must be called
    /// inside a Tokio runtime: it spawns the task that owns the stream.
    pub fn producer(&self, topic: &str) -> Producer {
        Producer::start(self.clone(), topic, ProducerOptions::default())
    }

    /// A pipelined producer with explicit limits.
    pub fn producer_with(
        &self,
        topic: &str,
        options: ProducerOptions,
    ) -> Result<Producer, ClientError> {
        options.validate()?;
        Ok(Producer::start(self.clone(), topic, options))
    }

    /// Attaches a consumer to `subscription` (created at the earliest offset
    /// if missing), holding at most `prefetch` unacknowledged messages.
    /// Fails here, not later, if the leader refuses (for example an unknown
    /// topic).
    pub async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        prefetch: u32,
    ) -> Result<Consumer, ClientError> {
        let options = SubscribeOptions {
            prefetch,
            ..Default::default()
        };
        self.subscribe_with(topic, subscription, options).await
    }

    /// Attaches a consumer with a mode, timeouts and dead-lettering (which
    /// take effect when this attach creates the subscription).
    pub async fn subscribe_with(
        &self,
        topic: &str,
        subscription: &str,
        options: SubscribeOptions,
    ) -> Result<Consumer, ClientError> {
        let request = options.request(topic, subscription, self.id());
        Consumer::attach(self.clone(), request, options.give_up_after).await
    }

    /// Runs `attempt` against the leader (or any node) until it succeeds, a
    /// server gives a final answer, or `deadline` or `ATTEMPTS_MAX` is hit.
    ///
    /// This is the only retry loop for reaching the leader; the decisions
    /// are `Router`'s, this function only does the I/O and the waiting.
    /// `attempt` builds a fresh request each time (requests are consumed).
    pub(crate) async fn call<T, F, Fut>(
        &self,
        route: Route,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<Attached<T>, ClientError>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let mut router = self.router();
        let mut address = router.first(self.leader());
        let mut last = Status::unavailable("no attempt made before the deadline");
        let mut attempts = 0;
        while attempts < ATTEMPTS_MAX {
            let budget = self
                .inner
                .options
                .rpc_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            // A pause that overshot the deadline: the last answer stands.
            if budget.is_zero() && attempts > 0 {
                break;
            }
            attempts += 1;
            let status = match self.attempt_once(&address, budget, &mut attempt).await {
                Ok(value) => {
                    if route == Route::Leader {
                        self.set_leader(&address);
                    }
                    return Ok(Attached { value, address });
                }
                Err(status) => status,
            };
            let failure = Failure::from_status(&status);
            let (next, delay) = match router.decide(&address, &failure) {
                Decision::Fail => return Err(ClientError::from(&status)),
                Decision::Retry { address, delay } => (address, delay),
            };
            tracing::debug!(
                %address, code = ?status.code(), message = status.message(), %next, ?delay,
                "retrying elsewhere"
            );
            self.forget_leader(&address);
            // An attempt cut short by the deadline says less than the
            // answers before it (a refused handshake, say): keep those.
            let cut_short = status.code() == tonic::Code::DeadlineExceeded
                && budget < self.inner.options.rpc_timeout;
            if !cut_short || attempts == 1 {
                last = Status::new(status.code(), format!("{address}: {}", describe(&status)));
            }
            if Instant::now() + delay >= deadline {
                break;
            }
            tokio::time::sleep(delay).await;
            address = next;
        }
        Err(ClientError::NoLeader {
            attempts,
            elapsed: started.elapsed(),
            code: last.code(),
            message: last.message().to_string(),
        })
    }

    /// One unary request by `route` (the leader, or any node for a read
    /// that may be a little behind), retried as `call` retries: its
    /// answer. `rpc` sends it with the generated client's method.
    pub(crate) async fn call_unary<Req, Resp, F, Fut>(
        &self,
        route: Route,
        request: Req,
        rpc: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Stub, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let timeout = self.inner.options.rpc_timeout;
        self.call_unary_within(route, request, timeout, rpc).await
    }

    /// `call_unary` with each attempt given `timeout` rather than the
    /// options' `rpc_timeout`: for calls the server itself lets run longer.
    pub(crate) async fn call_unary_within<Req, Resp, F, Fut>(
        &self,
        route: Route,
        request: Req,
        timeout: Duration,
        rpc: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Stub, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let attached = self
            .call(route, self.deadline(), |broker| {
                rpc(broker, unary(request.clone(), timeout))
            })
            .await?;
        Ok(attached.value.into_inner())
    }

    /// Records how a stream to `address` ended, so that the next attempt
    /// starts at the right node: the named leader if the server gave one,
    /// else anywhere but a leader that just dropped us.
    pub(crate) fn stream_ended(&self, address: &str, cause: Option<&Status>) {
        let leader = cause.and_then(|status| Failure::from_status(status).leader);
        match leader.map(|leader| normalize(&leader)) {
            Some(leader) if leader != address => self.set_leader(&leader),
            _ => self.forget_leader(address),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.options.retry_deadline
    }

    fn router(&self) -> Router {
        let options = &self.inner.options;
        let start = self.inner.rotation.fetch_add(1, Ordering::Relaxed);
        Router::new(
            self.inner.seeds.clone(),
            start,
            Backoff::new(options.backoff_initial, options.backoff_max),
        )
    }

    async fn attempt_once<T, F, Fut>(
        &self,
        address: &str,
        budget: Duration,
        attempt: &mut F,
    ) -> Result<T, Status>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let broker = self
            .broker(address)
            .map_err(|error| Status::unavailable(error.to_string()))?;
        match tokio::time::timeout(budget, attempt(broker)).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {budget:?}"
            ))),
        }
    }

    /// A stub on the cached (lazily connecting) channel to `address`.
    fn broker(&self, address: &str) -> Result<Stub, ClientError> {
        let mut channels = lock(&self.inner.channels);
        let channel = match channels.get(address) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = endpoint(address, &self.inner.options)?;
                let channel = self.inner.connector.channel(endpoint);
                if channels.len() >= CHANNELS_MAX {
                    channels.clear();
                }
                channels.insert(address.to_string(), channel.clone());
                channel
            }
        };
        let credentials = Credentials(self.inner.options.token.as_ref().map(Token::header));
        Ok(BrokerClient::with_interceptor(channel, credentials)
            .max_decoding_message_size(RESPONSE_BYTES_MAX))
    }

    fn set_leader(&self, address: &str) {
        *lock(&self.inner.leader) = Some(address.to_string());
    }

    fn forget_leader(&self, address: &str) {
        let mut leader = lock(&self.inner.leader);
        if leader.as_deref() == Some(address) {
            *leader = None;
        }
    }
}

/// The generated client on one node's channel, every request carrying
/// the client's token.
pub(crate) type Stub = BrokerClient<InterceptedService<Channel, Credentials>>;

/// Adds `authorization` to every request, when the client has a token.
#[derive(Clone)]
pub(crate) struct Credentials(Option<String>);

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            let value = header
                .parse()
                .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// The endpoint for a "host:port" address, with the client's timeouts
/// (and TLS, if the options have it).
fn endpoint(address: &str, options: &ClientOptions) -> Result<Endpoint, ClientError> {
    let invalid = |error: tonic::transport::Error| ClientError::InvalidAddress {
        address: address.to_string(),
        reason: error.to_string(),
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}")).map_err(invalid)?;
    if let Some(tls) = &options.tls {
        endpoint = endpoint.tls_config(tls_config(tls)).map_err(invalid)?;
    }
    Ok(endpoint
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

fn tls_config(tls: &TlsOptions) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    config
}

/// Addresses are compared as strings; accept an `http://` prefix from users
/// and trim stray whitespace from comma-separated lists.
/// One node's answer to a unary call, or why there was none within
/// `timeout`.
async fn answer_within<T, A: Into<T>>(
    timeout: Duration,
    call: impl Future<Output = Result<Response<A>, Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner().into()),
        Ok(Err(status)) => Err(ClientError::from(&status)),
        Err(_) => Err(ClientError::Rpc {
            code: tonic::Code::DeadlineExceeded,
            message: format!("no answer within {timeout:?}"),
        }),
    }
}

fn normalize(address: &str) -> String {
    let address = address.trim();
    address
        .strip_prefix("http://")
        .unwrap_or(address)
        .trim_end_matches('/')
        .to_string()
}

/// A unary request carrying its deadline to the server as `grpc-timeout`.
/// Streams get none: the header would cut them off.
fn unary<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

fn chunks(positions: impl IntoIterator<Item = impl Into<Position>>) -> Vec<Vec<proto::Position>> {
    let positions: Vec<proto::Position> = positions
        .into_iter()
        .map(|position| proto::Position::from(position.into()))
        .collect();
    positions
        .chunks(ACK_POSITIONS_MAX)
        .map(<[proto::Position]>::to_vec)
        .collect()
}

/// A poisoned lock only means another thread panicked mid-update of a cache
/// that is always valid; keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What an ack achieved: the log index it was applied at (the last one,
/// when it went in several requests). Acked messages are not delivered
/// again by anything decided after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub applied_at: u64,
}

/// Idempotent-producer ids: a random seed per client, then a counter
/// through splitmix64, so ids do not repeat across clients (as random ids
/// would not) and a simulation that seeds the client gets the same ids
/// every run.
#[derive(Debug)]
struct ProducerIds {
    /// The client's seed, mixed, so that neighbouring seeds (a simulation's
    /// clients 1, 2, 3) start far apart.
    base: u64,
    next: AtomicU64,
}

impl ProducerIds {
    /// A fresh id, never 0 (0 means "not idempotent" on the wire).
    fn next(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        splitmix64(self.base.wrapping_add(n)).max(1)
    }
}

/// Steele, Lea and Flood's 64-bit mixer: distinct inputs give distinct,
/// well spread outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_follow_the_seed_and_are_never_zero() {
        let ids = |seed: u64| {
            let client = Client::connect_via(
                vec!["127.0.0.1:1".to_string()],
                ClientOptions::default(),
                Arc::new(TcpConnector),
                seed,
            )
            .expect("client");
            (0..1000).map(|_| client.producer_id()).collect::<Vec<_>>()
        };
        let (a, again, other) = (ids(7), ids(7), ids(8));
        assert_eq!(a, again, "the same seed gives the same ids");
        assert_ne!(a, other);
        let distinct: std::collections::BTreeSet<_> = a.iter().chain(&other).collect();
        assert_eq!(distinct.len(), 2000);
        assert!(a.iter().all(|id| *id != 0));
    }

    #[test]
    fn addresses_are_normalized_and_validated() {
        assert_eq!(normalize(" http://10.0.0.1:7001/ "), "10.0.0.1:7001");
        assert!(matches!(Client::connect(vec![]), Err(ClientError::NoSeeds)));
        assert!(matches!(
            Client::connect(vec!["not an address".to_string()]),
            Err(ClientError::InvalidAddress { .. })
        ));
        let client = Client::connect(vec!["127.0.0.1:7001".to_string()]);
        assert!(client.is_ok_and(|client| client.leader().is_none()));
    }

    #[test]
    fn acks_are_split_into_bounded_requests() {
        let positions =
            (0..ACK_POSITIONS_MAX as u64 * 2 + 1).map(|offset| Position::new(0, offset));
        let sizes: Vec<usize> = chunks(positions).iter().map(Vec::len).collect();
        assert_eq!(sizes, [ACK_POSITIONS_MAX, ACK_POSITIONS_MAX, 1]);
        assert!(chunks(Vec::<Position>::new()).is_empty());
    }
}
