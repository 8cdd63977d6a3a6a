//! The simulated clients: producers publishing keyed messages, one batch at
//! a time, retrying unknown outcomes; a consumer acking in batches and
//! sometimes crashing. Everything they see goes to the oracle and the trace.
//! On some seeds a bulk publisher grows the log fast besides, unjudged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use raftmq_node::transport::Connector;
use raftmq_proto::v1::broker_client::BrokerClient;
use raftmq_proto::v1::{
    self, AckRequest, CreateTopicRequest, Position as WirePosition, PublishRequest,
    SubscribeRequest, SubscriptionMode,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::net::SimConnector;
use crate::oracle::{Oracle, Position, Seen};
use crate::trace::{now, Trace};

pub const TOPIC: &str = "sim";
/// The bulk publisher's topic: nobody subscribes to it.
const BULK_TOPIC: &str = "bulk";
/// The bulk publisher sends one request this often: each reaches the leader
/// alone and becomes a log entry of its own.
const BULK_EVERY: Duration = Duration::from_millis(1);
const SUBSCRIPTION: &str = "checker";
/// Every RPC's deadline.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// A consumer stream quiet this long acks what it holds.
const IDLE_ACK: Duration = Duration::from_millis(500);

/// The workload's shape, drawn from the seed.
#[derive(Clone, Debug)]
pub struct Workload {
    pub seed: u64,
    pub nodes: Vec<String>,
    pub partitions: u32,
    pub producers: u32,
    pub keys_per_producer: u32,
    /// Producers publish until this simulated time (the end of the chaos
    /// phase), pausing between batches, or until they sent this many.
    pub produce_until: Duration,
    pub messages_per_producer_max: u32,
    pub batch_max: u32,
    pub prefetch: u32,
    /// Chance per delivery, in thousandths, that the consumer crashes.
    pub consumer_crash_per_mille: u32,
    /// Consumers attached at once, and how they share the subscription.
    pub consumers: u32,
    pub mode: SubscriptionMode,
    /// The subscription's ack timeout; 0: none.
    pub ack_timeout_ms: u64,
    /// Simulated time by which every confirmed message must be delivered.
    pub deadline: Duration,
    /// Some: a bulk publisher runs until the driver sets this (or the
    /// chaos phase ends).
    pub bulk_done: Option<Arc<AtomicBool>>,
}

/// The cluster as one client task sees it: a guess at the leader that
/// follows redirects and otherwise rotates.
struct Nodes {
    addrs: Vec<String>,
    clients: Vec<BrokerClient<Channel>>,
    guess: usize,
}

impl Nodes {
    fn new(addrs: &[String]) -> Self {
        let clients = addrs
            .iter()
            .map(|addr| {
                BrokerClient::new(SimConnector.channel(addr).expect("valid simulated address"))
            })
            .collect();
        Nodes {
            addrs: addrs.to_vec(),
            clients,
            guess: 0,
        }
    }

    fn leader(&self) -> BrokerClient<Channel> {
        self.clients[self.guess].clone()
    }

    fn redirect(&mut self, status: &Status) {
        let named = status
            .metadata()
            .get(raftmq_proto::LEADER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|addr| self.addrs.iter().position(|a| a == addr));
        self.guess = named.unwrap_or((self.guess + 1) % self.addrs.len());
    }
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(RPC_TIMEOUT);
    request
}

/// Runs an RPC with a client-side deadline too: a server that never answers
/// (partitioned, paused) must not hang the caller.
async fn call<T>(rpc: impl std::future::Future<Output = Result<T, Status>>) -> Result<T, Status> {
    tokio::time::timeout(RPC_TIMEOUT, rpc)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("client deadline")))
}

async fn pause(rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
}

pub async fn run(
    workload: Workload,
    oracle: Oracle,
    trace: Trace,
) -> Result<(), Box<dyn std::error::Error>> {
    create_topic(&workload, TOPIC, workload.partitions, &trace).await;
    let bulk = workload.bulk_done.clone().map(|done| {
        let (workload, trace) = (workload.clone(), trace.clone());
        tokio::spawn(async move {
            create_topic(&workload, BULK_TOPIC, 1, &trace).await;
            publish_bulk(&workload, &done, &trace).await;
        })
    });
    let (stop_tx, stop) = watch::channel(false);
    let consumers: Vec<_> = (0..workload.consumers)
        .map(|c| {
            tokio::spawn(consume(
                workload.clone(),
                c,
                oracle.clone(),
                trace.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let producers: Vec<_> = (0..workload.producers)
        .map(|p| tokio::spawn(produce(workload.clone(), p, oracle.clone(), trace.clone())))
        .collect();
    for producer in producers.into_iter().chain(bulk) {
        producer.await?;
    }
    trace.record(
        now(),
        format!("producers done: {} confirmed", oracle.confirmed_count()),
    );
    // Bounded by the deadline: liveness is judged by the driver afterwards.
    while now() < workload.deadline && !oracle.undelivered().is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(true);
    for consumer in consumers {
        consumer.await?;
    }
    trace.record(
        now(),
        format!("workload done: {} delivered", oracle.delivered_count()),
    );
    Ok(())
}

async fn create_topic(workload: &Workload, name: &str, partitions: u32, trace: &Trace) {
    let mut nodes = Nodes::new(&workload.nodes);
    let mut rng = StdRng::seed_from_u64(workload.seed ^ 0x7091c);
    while now() < workload.deadline {
        let create = CreateTopicRequest {
            name: name.into(),
            partitions,
            max_messages: 0,
            max_bytes: 0,
        };
        match call(nodes.leader().create_topic(request(create))).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::AlreadyExists => break,
            Err(status) => {
                trace.record(now(), format!("create topic {name}: {:?}", status.code()));
                nodes.redirect(&status);
            }
        }
        pause(&mut rng).await;
    }
    trace.record(now(), format!("topic {name} created"));
}

/// Publishes to `BULK_TOPIC` over PublishStreams, one message every
/// `BULK_EVERY`, until `done` is set or the chaos phase ends, following
/// the leader. A stream sends on without waiting for commits, where unary
/// publishes would need many producers to keep that pace.
async fn publish_bulk(workload: &Workload, done: &Arc<AtomicBool>, trace: &Trace) {
    let mut nodes = Nodes::new(&workload.nodes);
    let mut rng = StdRng::seed_from_u64(workload.seed ^ 0xb01c);
    let mut confirmed = 0u64;
    while bulk_wanted(done, workload.produce_until) {
        let requests = bulk_requests(done.clone(), workload.produce_until);
        let ended = match call(nodes.leader().publish_stream(requests)).await {
            Ok(response) => {
                let mut responses = response.into_inner();
                loop {
                    match call(responses.message()).await {
                        Ok(Some(_)) => confirmed += 1,
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        if let Some(status) = ended {
            trace.record(now(), format!("bulk stream: {:?}", status.code()));
            nodes.redirect(&status);
            pause(&mut rng).await;
        }
    }
    trace.record(now(), format!("bulk done: {confirmed} confirmed"));
}

/// One keyless message every `BULK_EVERY` while `done` is unset and the
/// chaos phase lasts.
fn bulk_requests(done: Arc<AtomicBool>, until: Duration) -> impl Stream<Item = PublishRequest> {
    futures::stream::unfold(0, move |request_id| {
        let done = done.clone();
        async move {
            tokio::time::sleep(BULK_EVERY).await;
            let request = PublishRequest {
                topic: BULK_TOPIC.into(),
                request_id,
                messages: vec![v1::Message {
                    key: None,
                    payload: Bytes::from_static(b"bulk"),
                    headers: Default::default(),
                }],
                ..Default::default()
            };
            bulk_wanted(&done, until).then_some((request, request_id + 1))
        }
    })
}

fn bulk_wanted(done: &AtomicBool, until: Duration) -> bool {
    !done.load(Ordering::Relaxed) && now() < until
}

async fn produce(workload: Workload, producer: u32, oracle: Oracle, trace: Trace) {
    let mut nodes = Nodes::new(&workload.nodes);
    let mut rng = StdRng::seed_from_u64(workload.seed ^ (0x9e37 + u64::from(producer)));
    let mut next_seq = vec![0u64; workload.keys_per_producer as usize];
    let mut keyless = 0u64;
    let mut sent = 0;
    let mut request_id = 0;
    while sent < workload.messages_per_producer_max && now() < workload.produce_until {
        let size = rng
            .gen_range(1..=workload.batch_max)
            .min(workload.messages_per_producer_max - sent);
        // A quarter of the messages have no key: they go round robin and
        // carry no order promise.
        let batch: Vec<(Option<String>, Bytes)> = (0..size)
            .map(|_| {
                let (key, payload) = if rng.gen_ratio(1, 4) {
                    keyless += 1;
                    (None, Bytes::from(format!("p{producer}-{keyless}")))
                } else {
                    let k = rng.gen_range(0..workload.keys_per_producer) as usize;
                    next_seq[k] += 1;
                    let key = format!("p{producer}k{k}");
                    let payload = Bytes::from(format!("{key}:{}", next_seq[k]));
                    (Some(key), payload)
                };
                oracle.sent(&payload);
                (key, payload)
            })
            .collect();
        // Idempotent: a retried batch keeps its sequence, so it is stored
        // once, and a batch past a lost one is refused until it is resent.
        let sequence = u64::from(sent);
        sent += size;
        request_id += 1;
        // One batch at a time, retried until confirmed: per-key order holds
        // even when a retry stores a batch twice.
        loop {
            if now() > workload.deadline {
                trace.record(
                    now(),
                    format!("p{producer} gave up on request {request_id}"),
                );
                return;
            }
            let publish = PublishRequest {
                topic: TOPIC.into(),
                request_id,
                producer_id: u64::from(producer) + 1,
                sequence,
                messages: batch
                    .iter()
                    .map(|(key, payload)| v1::Message {
                        key: key.clone().map(Bytes::from),
                        payload: payload.clone(),
                        headers: Default::default(),
                    })
                    .collect(),
            };
            match call(nodes.leader().publish(request(publish))).await {
                Ok(response) => {
                    let positions = response.into_inner().positions;
                    for ((key, payload), p) in batch.iter().zip(&positions) {
                        oracle.confirmed(payload, key.as_deref(), (p.partition, p.offset));
                    }
                    let places: Vec<String> = positions
                        .iter()
                        .map(|p| format!("{}/{}", p.partition, p.offset))
                        .collect();
                    trace.record(now(), format!("p{producer} confirmed {}", places.join(",")));
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(10..150))).await;
                    break;
                }
                Err(status) => {
                    trace.record(
                        now(),
                        format!("p{producer} request {request_id}: {:?}", status.code()),
                    );
                    nodes.redirect(&status);
                    pause(&mut rng).await;
                }
            }
        }
    }
}

async fn consume(
    workload: Workload,
    index: u32,
    oracle: Oracle,
    trace: Trace,
    mut stop: watch::Receiver<bool>,
) {
    let mut nodes = Nodes::new(&workload.nodes);
    let mut rng = StdRng::seed_from_u64(workload.seed ^ (0xc045 + u64::from(index)));
    while !*stop.borrow() {
        let subscribe = SubscribeRequest {
            topic: TOPIC.into(),
            subscription: SUBSCRIPTION.into(),
            prefetch: workload.prefetch,
            mode: workload.mode as i32,
            ack_timeout_ms: workload.ack_timeout_ms,
            max_deliveries: 0,
            dead_letter_topic: None,
            start: 0,
        };
        let mut stream = match call(nodes.leader().subscribe(request(subscribe))).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                trace.record(
                    now(),
                    format!(
                        "subscribe at {}: {:?}",
                        nodes.addrs[nodes.guess],
                        status.code()
                    ),
                );
                if status.code() != Code::NotFound {
                    nodes.redirect(&status);
                }
                pause(&mut rng).await;
                continue;
            }
        };
        trace.record(now(), format!("subscribed at {}", nodes.addrs[nodes.guess]));
        let ack_batch = rng.gen_range(1..=workload.prefetch) as usize;
        let mut holding: Vec<Position> = Vec::new();
        let mut consumer = 0;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(IDLE_ACK, stream.message()) => next,
                _ = stop.changed() => break,
            };
            match next {
                Ok(Ok(Some(delivery))) => {
                    consumer = delivery.consumer_id;
                    let position = (delivery.partition, delivery.offset);
                    oracle.delivered(Seen {
                        consumer,
                        prefetch: workload.prefetch,
                        ordered: workload.mode != SubscriptionMode::Shared,
                        position,
                        decided_at: delivery.decided_at,
                        key: delivery.key.as_deref(),
                        payload: &delivery.payload,
                    });
                    trace.record(
                        now(),
                        format!(
                            "c{consumer} #{} {}/{} attempt {}",
                            delivery.sequence,
                            delivery.partition,
                            delivery.offset,
                            delivery.attempts
                        ),
                    );
                    holding.push(position);
                    if rng.gen_range(0..1000) < workload.consumer_crash_per_mille {
                        trace.record(
                            now(),
                            format!("c{consumer} crashes holding {}", holding.len()),
                        );
                        break;
                    }
                    if holding.len() >= ack_batch {
                        ack(&mut nodes, consumer, &mut holding, &oracle, &trace).await;
                    }
                }
                Err(_idle) if !holding.is_empty() => {
                    ack(&mut nodes, consumer, &mut holding, &oracle, &trace).await;
                }
                Err(_idle) => {}
                Ok(Ok(None)) | Ok(Err(_)) => {
                    trace.record(now(), format!("c{consumer} stream ended"));
                    break;
                }
            }
        }
        pause(&mut rng).await;
    }
}

/// Acks what the consumer holds. Acks are idempotent, so a failed one stays
/// held and goes again with the next batch; only a definite rejection drops
/// it.
async fn ack(
    nodes: &mut Nodes,
    consumer: u64,
    holding: &mut Vec<Position>,
    oracle: &Oracle,
    trace: &Trace,
) {
    oracle.ack_sent(consumer, holding);
    let ack = AckRequest {
        topic: TOPIC.into(),
        subscription: SUBSCRIPTION.into(),
        positions: holding
            .iter()
            .map(|&(partition, offset)| WirePosition { partition, offset })
            .collect(),
    };
    match call(nodes.leader().ack(request(ack))).await {
        Ok(response) => {
            oracle.acked(holding, response.into_inner().applied_at);
            trace.record(now(), format!("c{consumer} acked {}", holding.len()));
            holding.clear();
        }
        Err(status) => {
            trace.record(
                now(),
                format!("c{consumer} ack of {}: {:?}", holding.len(), status.code()),
            );
            if matches!(status.code(), Code::InvalidArgument | Code::NotFound) {
                holding.clear();
            }
            nodes.redirect(&status);
        }
    }
}
