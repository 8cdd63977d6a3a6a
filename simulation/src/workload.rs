//! The simulated applications, written against the real client crate as a
//! user would write them: producers publishing keyed messages through
//! `raftmq_client::Producer` (its pipeline, leader routing, redirects and
//! re-sends), consumers on `Consumer` (its re-subscribes) acking in batches,
//! handing some messages back (nacks) and sometimes crashing. Every client uses the production defaults and
//! reaches the nodes through the simulated network (`net::ClientConnector`).
//! Everything they see goes to the oracle and the trace. On some seeds a
//! bulk publisher grows the log fast besides, unjudged. A few messages
//! published first to a topic read only at the end pin the oldest log
//! entries, so the leader relocates their bodies while the rest goes by;
//! they must come back as published. On some seeds the judged topic has
//! priorities and some messages are delayed; beside it, a fanout exchange
//! routes messages, some with a TTL that runs out, to two topics
//! (`fanout.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use raftmq_client::{
    Client, ClientError, ClientOptions, Code, Consumer, Message, NackOptions,
    Position as ClientPosition, Properties, SubscribeOptions, SubscriptionMode, TopicOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::fanout;
use crate::net::ClientConnector;
use crate::oracle::{Oracle, Position, Seen};
use crate::trace::{now, Trace};

pub const TOPIC: &str = "sim";
/// The bulk publisher's topic: nobody subscribes to it.
const BULK_TOPIC: &str = "bulk";
/// The bulk publisher sends one message this often: the producer sends a
/// lone message at once, so each becomes a request, and a log entry, of its
/// own.
const BULK_EVERY: Duration = Duration::from_millis(1);
const SUBSCRIPTION: &str = "checker";
/// Read only once every judged message was delivered.
const PINNED_TOPIC: &str = "pinned";
const PINNED_MESSAGES: usize = 3;
/// A consumer quiet this long acks what it holds.
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
    /// Chance per delivery, in thousandths, that the consumer hands it
    /// back (a nack, for redelivery now or after a delay) instead of
    /// acking it.
    pub nack_per_mille: u32,
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
    /// The judged topic's highest priority (0: none); producers draw each
    /// message's from 0 to one above it (which counts as the highest).
    pub max_priority: u32,
    /// Chance per message, in thousandths, that it is published delayed,
    /// by up to `DELAY_MAX_MS`.
    pub delay_per_mille: u32,
}

/// The longest delay a judged message is published with.
const DELAY_MAX_MS: u32 = 400;

/// Which application a client belongs to: each gets its own client (its
/// own connections, leader guess and producer ids), as separate processes
/// would.
#[derive(Clone, Copy)]
pub(crate) enum App {
    Admin,
    Bulk,
    Pinned,
    Fanout,
    Producer(u32),
    Consumer(u32),
}

impl App {
    fn salt(self) -> u64 {
        match self {
            App::Admin => 0x7091c,
            App::Bulk => 0xb01c,
            App::Pinned => 0x9177ed,
            App::Fanout => 0xfa0,
            App::Producer(p) => 0x9e37 + u64::from(p),
            App::Consumer(c) => 0xc045 + u64::from(c),
        }
    }
}

impl Workload {
    /// A client with the production defaults over the simulated network;
    /// its producer ids and this app's random choices come from the seed.
    pub(crate) fn client(&self, app: App) -> (Client, StdRng) {
        let seed = self.seed ^ app.salt();
        let client = Client::connect_via(
            self.nodes.clone(),
            ClientOptions::default(),
            Arc::new(ClientConnector),
            seed,
        )
        .expect("the simulated addresses and default options are valid");
        (client, StdRng::seed_from_u64(seed))
    }

    /// Runs `work` until the deadline; `None` if the deadline came first.
    pub(crate) async fn by_deadline<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let left = self.deadline.saturating_sub(now());
        tokio::time::timeout(left, work).await.ok()
    }
}

/// Returns once the workload is told to stop (at once if it already was).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

pub(crate) async fn pause(rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
}

pub async fn run(
    workload: Workload,
    oracle: Oracle,
    trace: Trace,
) -> Result<(), Box<dyn std::error::Error>> {
    let judged = TopicOptions {
        max_priority: workload.max_priority,
        ..TopicOptions::default()
    };
    create_topic(
        &workload,
        App::Admin,
        TOPIC,
        workload.partitions,
        judged,
        &trace,
    )
    .await;
    create_topic(
        &workload,
        App::Pinned,
        PINNED_TOPIC,
        1,
        TopicOptions::default(),
        &trace,
    )
    .await;
    let pinned = publish_pinned(&workload, &trace).await;
    // Its own check follows its publishes, while the rest goes on.
    let fanout = {
        let (workload, oracle, trace) = (workload.clone(), oracle.clone(), trace.clone());
        tokio::spawn(async move {
            let confirmed = fanout::publish(&workload, &oracle, &trace).await;
            fanout::check(&workload, &confirmed, &oracle, &trace).await;
        })
    };
    let bulk = workload.bulk_done.clone().map(|done| {
        let (workload, trace) = (workload.clone(), trace.clone());
        tokio::spawn(async move {
            create_topic(
                &workload,
                App::Bulk,
                BULK_TOPIC,
                1,
                TopicOptions::default(),
                &trace,
            )
            .await;
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
    check_pinned(&workload, &pinned, &oracle, &trace).await;
    fanout.await?;
    trace.record(
        now(),
        format!("workload done: {} delivered", oracle.delivered_count()),
    );
    Ok(())
}

/// Declares a topic, retrying through outages until the deadline.
pub(crate) async fn create_topic(
    workload: &Workload,
    app: App,
    name: &str,
    partitions: u32,
    options: TopicOptions,
    trace: &Trace,
) {
    let (client, mut rng) = workload.client(app);
    while now() < workload.deadline {
        let created = workload
            .by_deadline(client.create_topic_with(name, partitions, options))
            .await;
        match created {
            None | Some(Ok(_)) => break,
            Some(Err(error)) => trace.record(now(), format!("create topic {name}: {error}")),
        }
        pause(&mut rng).await;
    }
    trace.record(now(), format!("topic {name} created"));
}

/// Publishes to `BULK_TOPIC`, one message every `BULK_EVERY`, until `done`
/// is set or the chaos phase ends. Its confirms are not judged.
async fn publish_bulk(workload: &Workload, done: &AtomicBool, trace: &Trace) {
    let (client, _) = workload.client(App::Bulk);
    let producer = client.producer(BULK_TOPIC);
    let mut sent = 0u64;
    while !done.load(Ordering::Relaxed) && now() < workload.produce_until {
        tokio::time::sleep(BULK_EVERY).await;
        match producer
            .send(Message::new(Bytes::from_static(b"bulk")))
            .await
        {
            // Dropping a confirm does not cancel its message.
            Ok(_confirm) => sent += 1,
            Err(error) => {
                trace.record(now(), format!("bulk producer: {error}"));
                break;
            }
        }
    }
    trace.record(now(), format!("bulk done: {sent} sent"));
}

/// Publishes `PINNED_MESSAGES` to `PINNED_TOPIC`, one request each, until
/// each is confirmed or the chaos phase ends: where each is stored.
async fn publish_pinned(workload: &Workload, trace: &Trace) -> Vec<(ClientPosition, Bytes)> {
    let (client, mut rng) = workload.client(App::Pinned);
    let mut pinned = Vec::new();
    for n in 0..PINNED_MESSAGES {
        let payload = Bytes::from(format!("pinned {n} {}", "p".repeat(n * 10)));
        while now() < workload.produce_until {
            let sent = client
                .publish(PINNED_TOPIC, vec![Message::new(payload.clone())])
                .await;
            match sent.map(|positions| positions.first().copied()) {
                Ok(Some(position)) => {
                    pinned.push((position, payload));
                    break;
                }
                Ok(None) => {}
                Err(error) => trace.record(now(), format!("pinned publish: {error}")),
            }
            pause(&mut rng).await;
        }
    }
    trace.record(now(), format!("pinned: {} confirmed", pinned.len()));
    pinned
}

/// Reads `PINNED_TOPIC` from its start: each pinned message must be served
/// at its place, as published.
async fn check_pinned(
    workload: &Workload,
    pinned: &[(ClientPosition, Bytes)],
    oracle: &Oracle,
    trace: &Trace,
) {
    let (client, mut rng) = workload.client(App::Pinned);
    let mut unseen: Vec<&(ClientPosition, Bytes)> = pinned.iter().collect();
    while !unseen.is_empty() && now() < workload.deadline {
        let Some(Ok(mut consumer)) = workload
            .by_deadline(client.subscribe(PINNED_TOPIC, SUBSCRIPTION, 16))
            .await
        else {
            pause(&mut rng).await;
            continue;
        };
        while let Some(Some(Ok(delivery))) = workload.by_deadline(consumer.next()).await {
            let at = (delivery.partition, delivery.offset);
            if let Some(i) = unseen
                .iter()
                .position(|(p, _)| (p.partition, p.offset) == at)
            {
                let (_, published) = unseen.remove(i);
                if *published != delivery.payload {
                    oracle.violation(format!(
                        "pinned {at:?} delivered {:?}, confirmed as {published:?}",
                        delivery.payload
                    ));
                }
            }
            if unseen.is_empty() {
                break;
            }
        }
    }
    for (position, _) in unseen {
        oracle.violation(format!(
            "pinned {:?} not delivered",
            (position.partition, position.offset)
        ));
    }
    trace.record(now(), "pinned checked".to_string());
}

/// One message of a judged producer: what it was and how its confirm ended.
type Outcome = (Option<String>, Bytes, Result<ClientPosition, ClientError>);

async fn produce(workload: Workload, index: u32, oracle: Oracle, trace: Trace) {
    let (client, mut rng) = workload.client(App::Producer(index));
    let producer = client.producer(TOPIC);
    // Half the producers wait for each batch's confirms before going on, as
    // a caller that needs the outcome does. The others keep sending while
    // confirms resolve, so the pipeline holds several requests in flight
    // and re-sends them in order after a break.
    let waits = rng.gen_ratio(1, 2);
    let mut next_seq = vec![0u64; workload.keys_per_producer as usize];
    let mut keyless = 0u64;
    let mut sent = 0;
    let mut confirms = FuturesUnordered::new();
    while sent < workload.messages_per_producer_max && now() < workload.produce_until {
        let size = rng
            .gen_range(1..=workload.batch_max)
            .min(workload.messages_per_producer_max - sent);
        sent += size;
        for _ in 0..size {
            // A quarter of the messages have no key: they go round robin
            // and carry no order promise.
            let (key, payload) = if rng.gen_ratio(1, 4) {
                keyless += 1;
                (None, Bytes::from(format!("p{index}-{keyless}")))
            } else {
                let k = rng.gen_range(0..workload.keys_per_producer) as usize;
                next_seq[k] += 1;
                let key = format!("p{index}k{k}");
                let payload = Bytes::from(format!("{key}:{}", next_seq[k]));
                (Some(key), payload)
            };
            let delay_ms = (rng.gen_range(0..1000) < workload.delay_per_mille)
                .then(|| rng.gen_range(1..=DELAY_MAX_MS));
            let priority =
                (workload.max_priority > 0).then(|| rng.gen_range(0..=workload.max_priority + 1));
            oracle.sent(&payload, delay_ms.unwrap_or(0));
            let properties = Properties {
                delay_ms,
                priority,
                ..Properties::default()
            };
            let message = match &key {
                Some(key) => Message::new(payload.clone()).with_key(key.clone()),
                None => Message::new(payload.clone()),
            }
            .with_properties(properties);
            match producer.send(message).await {
                Ok(confirm) => confirms.push(async move { (key, payload, confirm.await) }),
                Err(error) => trace.record(now(), format!("p{index} send: {error}")),
            }
        }
        if waits && !resolve(&workload, index, &mut confirms, &oracle, &trace).await {
            return;
        }
        let pause = tokio::time::sleep(Duration::from_millis(rng.gen_range(10..150)));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                Some(outcome) = confirms.next() => judge(index, outcome, &oracle, &trace),
            }
        }
    }
    resolve(&workload, index, &mut confirms, &oracle, &trace).await;
}

/// Judges every pending confirm as it resolves (once a leader answers);
/// false if some were still unknown at the deadline.
async fn resolve(
    workload: &Workload,
    producer: u32,
    confirms: &mut FuturesUnordered<impl Future<Output = Outcome>>,
    oracle: &Oracle,
    trace: &Trace,
) -> bool {
    let all = workload
        .by_deadline(async {
            while let Some(outcome) = confirms.next().await {
                judge(producer, outcome, oracle, trace);
            }
        })
        .await;
    if all.is_none() {
        let unknown = confirms.len();
        trace.record(
            now(),
            format!("p{producer}: {unknown} outcomes unknown at the deadline"),
        );
    }
    all.is_some()
}

fn judge(producer: u32, (key, payload, outcome): Outcome, oracle: &Oracle, trace: &Trace) {
    match outcome {
        Ok(position) => {
            let at = (position.partition, position.offset);
            oracle.confirmed(&payload, key.as_deref(), at);
            trace.record(now(), format!("p{producer} confirmed {}/{}", at.0, at.1));
        }
        Err(error) => trace.record(now(), format!("p{producer} {payload:?}: {error}")),
    }
}

async fn consume(
    workload: Workload,
    index: u32,
    oracle: Oracle,
    trace: Trace,
    mut stop: watch::Receiver<bool>,
) {
    let (client, mut rng) = workload.client(App::Consumer(index));
    let options = SubscribeOptions {
        prefetch: workload.prefetch,
        mode: Some(workload.mode),
        ack_timeout: (workload.ack_timeout_ms > 0)
            .then(|| Duration::from_millis(workload.ack_timeout_ms)),
        ..SubscribeOptions::default()
    };
    while !*stop.borrow() {
        let attached = tokio::select! {
            attached = client.subscribe_with(TOPIC, SUBSCRIPTION, options.clone()) => attached,
            _ = stopped(&mut stop) => break,
        };
        let mut consumer = match attached {
            Ok(consumer) => consumer,
            Err(error) => {
                trace.record(now(), format!("consumer {index} subscribe: {error}"));
                pause(&mut rng).await;
                continue;
            }
        };
        trace.record(now(), format!("consumer {index} subscribed"));
        let ack_batch = rng.gen_range(1..=workload.prefetch) as usize;
        let mut holding = Holding::default();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(IDLE_ACK, consumer.next()) => next,
                _ = stopped(&mut stop) => break,
            };
            match next {
                Ok(Some(Ok(delivery))) => {
                    // The consumer re-subscribed on its own (a leader
                    // change): what the old attach held went back to the
                    // subscription when its stream ended.
                    if delivery.consumer_id != holding.consumer {
                        if holding.consumer != 0 {
                            let (new, old) = (delivery.consumer_id, holding.consumer);
                            trace.record(now(), format!("c{new} attached after c{old}"));
                        }
                        holding = Holding {
                            consumer: delivery.consumer_id,
                            positions: Vec::new(),
                        };
                    }
                    let position = (delivery.partition, delivery.offset);
                    oracle.delivered(Seen {
                        consumer: delivery.consumer_id,
                        prefetch: workload.prefetch,
                        ordered: workload.mode != SubscriptionMode::Shared,
                        position,
                        decided_at: delivery.decided_at,
                        publish_ms: delivery.publish_time_ms,
                        decided_ms: delivery.decided_time_ms,
                        key: delivery.key.as_deref(),
                        payload: &delivery.payload,
                    });
                    trace.record(
                        now(),
                        format!(
                            "c{} #{} {}/{} attempt {}",
                            delivery.consumer_id,
                            delivery.sequence,
                            delivery.partition,
                            delivery.offset,
                            delivery.attempts
                        ),
                    );
                    if rng.gen_range(0..1000) < workload.nack_per_mille {
                        let delay = Duration::from_millis([0, 0, 100, 500][rng.gen_range(0..4)]);
                        let nack = nack(
                            &consumer,
                            holding.consumer,
                            position,
                            delay,
                            &oracle,
                            &trace,
                        );
                        tokio::select! {
                            _ = nack => {}
                            _ = stopped(&mut stop) => break,
                        }
                        continue;
                    }
                    holding.positions.push(position);
                    if rng.gen_range(0..1000) < workload.consumer_crash_per_mille {
                        trace.record(
                            now(),
                            format!(
                                "c{} crashes holding {}",
                                holding.consumer,
                                holding.positions.len()
                            ),
                        );
                        break;
                    }
                    if holding.positions.len() >= ack_batch {
                        ack(&consumer, &mut holding, &oracle, &trace, &mut stop).await;
                    }
                }
                Err(_idle) if !holding.positions.is_empty() => {
                    ack(&consumer, &mut holding, &oracle, &trace, &mut stop).await;
                }
                Err(_idle) => {}
                Ok(Some(Err(error))) => {
                    trace.record(now(), format!("c{} failed: {error}", holding.consumer));
                    break;
                }
                Ok(None) => break,
            }
        }
        // Dropping the consumer ends its stream: a crash, as the broker
        // sees it.
        drop(consumer);
        pause(&mut rng).await;
    }
}

/// What a consumer holds unacked, and from which attach.
#[derive(Default)]
struct Holding {
    consumer: u64,
    positions: Vec<Position>,
}

/// Hands one delivery back for redelivery after `delay`. Whatever the
/// outcome the consumer forgets it: if the nack was lost, the message
/// returns when its ack timeout or the stream ends.
async fn nack(
    consumer: &Consumer,
    id: u64,
    position: Position,
    delay: Duration,
    oracle: &Oracle,
    trace: &Trace,
) {
    oracle.nack_sent(id, &[position]);
    let options = NackOptions {
        reject: false,
        delay,
    };
    let nacked = consumer
        .nack_with([ClientPosition::new(position.0, position.1)], options)
        .await;
    let outcome = match nacked {
        Ok(()) => "nacked".to_string(),
        Err(error) => format!("nack failed: {error}"),
    };
    trace.record(
        now(),
        format!(
            "c{id} {outcome} {}/{} for {delay:?}",
            position.0, position.1
        ),
    );
}

/// Acks what the consumer holds. Acks are idempotent, so a failed one stays
/// held and goes again with the next batch; only a definite rejection drops
/// it.
async fn ack(
    consumer: &Consumer,
    holding: &mut Holding,
    oracle: &Oracle,
    trace: &Trace,
    stop: &mut watch::Receiver<bool>,
) {
    let Holding {
        consumer: id,
        positions,
    } = holding;
    oracle.ack_sent(*id, positions);
    let acked = tokio::select! {
        acked = consumer.ack(positions.iter().map(|&(p, o)| ClientPosition::new(p, o))) => acked,
        _ = stopped(stop) => return,
    };
    match acked {
        Ok(acked) => {
            oracle.acked(positions, acked.applied_at);
            trace.record(now(), format!("c{id} acked {}", positions.len()));
            positions.clear();
        }
        Err(error) => {
            trace.record(now(), format!("c{id} ack of {}: {error}", positions.len()));
            let rejected = matches!(
                error,
                ClientError::Rpc {
                    code: Code::InvalidArgument | Code::NotFound,
                    ..
                }
            );
            if rejected {
                positions.clear();
            }
        }
    }
}
