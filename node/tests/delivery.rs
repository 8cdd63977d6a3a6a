//! Delivery semantics against real nodes: each subscription mode's promise,
//! prefetch, nack and dead letters, ack timeouts, idempotent retries, and
//! all of it across a leader kill.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Cluster;
use raftmq_client::{
    Client, Consumer, Delivery, Message, NackOptions, Overflow, Properties, StartAt,
    SubscribeOptions, SubscriptionMode, TopicOptions,
};
use raftmq_proto::v1::broker_client::BrokerClient;
use raftmq_proto::v1::PublishRequest;

/// The next delivery, or `None` after `wait` of silence.
async fn next_within(consumer: &mut Consumer, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, consumer.next()).await {
        Ok(Some(Ok(delivery))) => Some(delivery),
        Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
        Ok(None) | Err(_) => None,
    }
}

/// Asserts that nothing arrives for `wait`.
async fn assert_quiet(consumer: &mut Consumer, wait: Duration, what: &str) {
    if let Some(delivery) = next_within(consumer, wait).await {
        panic!("{what}: offset {} arrived", delivery.offset);
    }
}

async fn subscribe(
    client: &Client,
    topic: &str,
    subscription: &str,
    options: SubscribeOptions,
) -> Consumer {
    client
        .subscribe_with(topic, subscription, options)
        .await
        .expect("subscribe")
}

/// The next `count` deliveries, unacked.
async fn take(consumer: &mut Consumer, count: usize) -> Vec<Delivery> {
    let mut taken = Vec::with_capacity(count);
    for _ in 0..count {
        taken.push(next(consumer).await);
    }
    taken
}

async fn next(consumer: &mut Consumer) -> Delivery {
    next_within(consumer, Duration::from_secs(10))
        .await
        .expect("a delivery within 10 s")
}

fn mode(mode: SubscriptionMode, prefetch: u32) -> SubscribeOptions {
    SubscribeOptions {
        prefetch,
        mode: Some(mode),
        ..Default::default()
    }
}

fn text(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.payload).into_owned()
}

async fn publish_keyless(client: &Client, topic: &str, count: usize) {
    let messages = (0..count).map(|i| Message::new(format!("m{i}"))).collect();
    client.publish(topic, messages).await.expect("publish");
}

/// Publishes `count` messages over `keys` keys, payload "key:n" with n
/// rising per key.
async fn publish_keyed(client: &Client, topic: &str, count: usize, keys: usize) {
    let messages = (0..count)
        .map(|i| {
            Message::new(format!("k{}:{}", i % keys, i / keys)).with_key(format!("k{}", i % keys))
        })
        .collect();
    client.publish(topic, messages).await.expect("publish");
}

/// Checks DESIGN.md's order rule from the consumers' side: a message of a
/// key reaches a consumer only after every earlier message of that key was
/// acked or handed to that same consumer.
#[derive(Default)]
struct KeyOrder {
    acked: BTreeSet<String>,
    seen_by: BTreeMap<u64, BTreeSet<String>>,
}

impl KeyOrder {
    fn delivered(&mut self, delivery: &Delivery) {
        let payload = text(delivery);
        let (key, n) = payload.split_once(':').expect("key:n");
        let n: usize = n.parse().expect("n");
        let seen = self.seen_by.entry(delivery.consumer_id).or_default();
        for earlier in 0..n {
            let earlier = format!("{key}:{earlier}");
            assert!(
                self.acked.contains(&earlier) || seen.contains(&earlier),
                "{payload} reached consumer {} before unacked {earlier}",
                delivery.consumer_id
            );
        }
        seen.insert(payload);
    }

    fn acked(&mut self, deliveries: &[Delivery]) {
        self.acked.extend(deliveries.iter().map(text));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_partition_order_across_a_consumer_kill() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("f", 1).await.expect("topic");
    publish_keyless(&client, "f", 30).await;

    // The first consumer is active, the second stands by.
    let mut active = subscribe(&client, "f", "s", mode(SubscriptionMode::Failover, 5)).await;
    let mut standby = subscribe(&client, "f", "s", mode(SubscriptionMode::Failover, 5)).await;
    let taken = take(&mut active, 5).await;
    assert_quiet(
        &mut standby,
        Duration::from_millis(500),
        "standby got a message",
    )
    .await;
    active.ack(&taken[..3]).await.expect("ack");
    drop(active); // killed holding offsets 3 and 4

    // The standby takes over in partition order, the returned ones first:
    // 3 and 4, and 5 to 7 that the acks' credit had sent to the first.
    let mut offsets = Vec::new();
    while offsets.len() < 27 {
        let delivery = next(&mut standby).await;
        assert_eq!(
            delivery.redelivered,
            delivery.offset < 8,
            "offset {}",
            delivery.offset
        );
        offsets.push(delivery.offset);
        standby.ack([&delivery]).await.expect("ack");
    }
    assert_eq!(offsets, (3..30).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_spreads_work_over_three_consumers_and_redelivers_a_killed_ones() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("w", 2).await.expect("topic");
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(subscribe(&client, "w", "workers", mode(SubscriptionMode::Shared, 4)).await);
    }
    publish_keyless(&client, "w", 60).await;

    // Every consumer gets a full prefetch: the work is spread.
    let mut first: Vec<Vec<Delivery>> = Vec::new();
    for consumer in &mut consumers {
        first.push(take(consumer, 4).await);
    }
    // The third consumer dies holding four; the others finish the queue.
    let killed: BTreeSet<String> = first[2].iter().map(text).collect();
    let killed_consumer = consumers.pop().expect("third");
    drop(killed_consumer);
    let mut done: BTreeSet<String> = BTreeSet::new();
    for (consumer, got) in consumers.iter_mut().zip(&first) {
        consumer.ack(got).await.expect("ack");
        done.extend(got.iter().map(text));
    }
    let mut redelivered = BTreeSet::new();
    for _round in 0..200 {
        if done.len() == 60 {
            break;
        }
        for consumer in &mut consumers {
            if let Some(delivery) = next_within(consumer, Duration::from_millis(100)).await {
                if delivery.redelivered {
                    redelivered.insert(text(&delivery));
                }
                done.insert(text(&delivery));
                consumer.ack([&delivery]).await.expect("ack");
            }
        }
    }
    assert_eq!(done.len(), 60, "every message processed");
    assert!(
        killed.is_subset(&redelivered),
        "the killed consumer's messages came back: {killed:?} vs {redelivered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shared_keeps_per_key_order_as_consumers_join_and_leave() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("k", 2).await.expect("topic");
    publish_keyed(&client, "k", 200, 10).await;
    let key_shared = || mode(SubscriptionMode::KeyShared, 10);
    let mut order = KeyOrder::default();
    let mut done = BTreeSet::new();
    let mut consumers = vec![subscribe(&client, "k", "ks", key_shared()).await];
    // Phases: one consumer; a second joins; the first leaves holding
    // messages; a third joins. Bounded by rounds.
    for round in 0..400 {
        if done.len() == 200 {
            break;
        }
        match round {
            5 => consumers.push(subscribe(&client, "k", "ks", key_shared()).await),
            15 => drop(consumers.remove(0)),
            25 => consumers.push(subscribe(&client, "k", "ks", key_shared()).await),
            _ => {}
        }
        for (index, consumer) in consumers.iter_mut().enumerate() {
            let mut batch = Vec::new();
            while let Some(delivery) = next_within(consumer, Duration::from_millis(50)).await {
                order.delivered(&delivery);
                batch.push(delivery);
                if batch.len() == 5 {
                    break;
                }
            }
            // Before it leaves, the first consumer stops acking: its keys
            // must wait for it, then move whole to the others.
            let leaving = index == 0 && (10..15).contains(&round);
            if !leaving {
                consumer.ack(&batch).await.expect("ack");
                order.acked(&batch);
                done.extend(batch.iter().map(text));
            }
        }
    }
    assert_eq!(done.len(), 200, "every message processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_never_holds_more_than_its_prefetch() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("p", 2).await.expect("topic");
    publish_keyless(&client, "p", 20).await;
    let mut consumer = subscribe(&client, "p", "s", mode(SubscriptionMode::Shared, 5)).await;
    let held = take(&mut consumer, 5).await;
    assert_quiet(
        &mut consumer,
        Duration::from_secs(1),
        "a sixth while holding five",
    )
    .await;
    // The server counts the same: five in flight, on every replica.
    for id in 1..=3 {
        let page = cluster.metrics(id).await;
        let held = format!(
            "raftmq_consumer_in_flight{{consumer=\"{}\"}} 5",
            held[0].consumer_id
        );
        assert!(
            page.lines().any(|line| line == held),
            "node {id}: {held:?} not in its metrics"
        );
    }
    consumer.ack(&held[..2]).await.expect("ack");
    for _ in 0..2 {
        next(&mut consumer).await;
    }
    assert_quiet(
        &mut consumer,
        Duration::from_secs(1),
        "more than the two acked",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_the_dead_letter_topic_after_exactly_max_deliveries() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("orders", 1).await.expect("topic");
    client
        .create_topic("orders-dlq", 1)
        .await
        .expect("dlq topic");
    client
        .publish("orders", vec![Message::new("poison")])
        .await
        .expect("publish");
    let options = SubscribeOptions {
        prefetch: 1,
        max_deliveries: 3,
        dead_letter_topic: Some("orders-dlq".into()),
        ..Default::default()
    };
    let mut consumer = subscribe(&client, "orders", "billing", options).await;
    for attempt in 1..=3 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.attempts, attempt);
        consumer.nack([&delivery]).await.expect("nack");
    }
    assert_quiet(
        &mut consumer,
        Duration::from_secs(1),
        "delivered a fourth time",
    )
    .await;

    let mut inspector = client
        .subscribe("orders-dlq", "inspect", 10)
        .await
        .expect("subscribe dlq");
    let dead = next(&mut inspector).await;
    assert_eq!(text(&dead), "poison");
    let header = |name: &str| dead.headers.get(name).map(String::as_str);
    assert_eq!(
        header("x-raftmq-dead-letter-reason"),
        Some("max-deliveries")
    );
    assert_eq!(header("x-raftmq-source-topic"), Some("orders"));
    assert_eq!(header("x-raftmq-source-subscription"), Some("billing"));
    assert_eq!(header("x-raftmq-failures"), Some("3"));

    // A reject goes straight there, with its own reason; the message's
    // properties and headers go with it unchanged.
    let properties = Properties {
        content_type: Some("text/plain".into()),
        correlation_id: Some("req-7".into()),
        reply_to: Some("replies".into()),
        message_id: Some("m-1".into()),
        timestamp_ms: Some(1_700_000_000_000),
        r#type: Some("order.created".into()),
        app_id: Some("shop".into()),
        content_encoding: Some("identity".into()),
        ttl_ms: Some(3_600_000),
        // A delay that is over before it starts: carried, nothing waits.
        delay_ms: Some(0),
        not_before_ms: Some(1_000),
        priority: Some(3),
    };
    let bad = Message::new("bad")
        .with_header("trace", "t-1")
        .with_properties(properties.clone());
    client.publish("orders", vec![bad]).await.expect("publish");
    let bad = next(&mut consumer).await;
    assert_eq!(bad.properties.as_deref(), Some(&properties));
    assert_eq!(bad.headers.get("trace").map(String::as_str), Some("t-1"));
    consumer
        .nack_with(
            [&bad],
            NackOptions {
                reject: true,
                ..Default::default()
            },
        )
        .await
        .expect("reject");
    let rejected = next(&mut inspector).await;
    assert_eq!(text(&rejected), "bad");
    assert_eq!(rejected.properties.as_deref(), Some(&properties));
    assert_eq!(
        rejected.headers.get("trace").map(String::as_str),
        Some("t-1")
    );
    assert_eq!(dead.properties, None, "none published, none delivered");
    assert_eq!(
        rejected
            .headers
            .get("x-raftmq-dead-letter-reason")
            .map(String::as_str),
        Some("rejected")
    );
}

/// An expired message is never delivered, by the leader's clock: a
/// subscription with a dead-letter topic sends it there with reason
/// `expired`, body and properties unchanged; the topic's longer TTL lets
/// the other one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_never_delivered_and_lands_in_the_dead_letter_topic() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    let minute = TopicOptions {
        message_ttl_ms: 60_000,
        ..TopicOptions::default()
    };
    client
        .create_topic_with("ttl", 1, minute)
        .await
        .expect("topic");
    client.create_topic("ttl-dlq", 1).await.expect("dlq topic");
    let short = Message::new("short").with_properties(Properties {
        ttl_ms: Some(300),
        ..Properties::default()
    });
    client
        .publish("ttl", vec![short, Message::new("long")])
        .await
        .expect("publish");
    // Every entry after this one is stamped at least a second later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let options = SubscribeOptions {
        prefetch: 10,
        dead_letter_topic: Some("ttl-dlq".into()),
        ..Default::default()
    };
    let mut consumer = subscribe(&client, "ttl", "s", options).await;
    assert_eq!(text(&next(&mut consumer).await), "long");
    assert_quiet(&mut consumer, Duration::from_secs(1), "an expired message").await;

    let mut inspector = client
        .subscribe("ttl-dlq", "inspect", 10)
        .await
        .expect("subscribe dlq");
    let dead = next(&mut inspector).await;
    assert_eq!(text(&dead), "short");
    let header = |name: &str| dead.headers.get(name).map(String::as_str);
    assert_eq!(header("x-raftmq-dead-letter-reason"), Some("expired"));
    assert_eq!(header("x-raftmq-source-topic"), Some("ttl"));
    assert_eq!(header("x-raftmq-source-offset"), Some("0"));
    assert_eq!(dead.properties.and_then(|p| p.ttl_ms), Some(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_is_redelivered_after_the_ack_timeout() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("slow", 1).await.expect("topic");
    client
        .publish("slow", vec![Message::new("job")])
        .await
        .expect("publish");
    let options = SubscribeOptions {
        prefetch: 1,
        ack_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let mut consumer = subscribe(&client, "slow", "s", options).await;
    let first = next(&mut consumer).await;
    assert_eq!(first.attempts, 1);
    let again = next(&mut consumer).await;
    assert_eq!(
        (again.offset, again.attempts, again.redelivered),
        (first.offset, 2, true)
    );
    consumer.ack([&again]).await.expect("ack");
    assert_quiet(
        &mut consumer,
        Duration::from_secs(1),
        "redelivered after its ack",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_publish_is_stored_once_with_a_producer_id_and_twice_without() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("once", 1).await.expect("topic");
    let leader = cluster.wait_for_leader(None).await;
    let mut broker = BrokerClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect");
    let request = |producer_id: u64| PublishRequest {
        topic: "once".into(),
        messages: (0..3)
            .map(|i| Message::new(format!("m{i}")).into())
            .collect(),
        request_id: 1,
        producer_id,
        sequence: 0,
    };
    // The confirm is "lost" and the client sends the same request again.
    let first = broker
        .publish(request(42))
        .await
        .expect("publish")
        .into_inner();
    let retry = broker
        .publish(request(42))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        first.positions, retry.positions,
        "confirmed with the first positions"
    );
    let retained = |topics: Vec<raftmq_client::TopicInfo>| {
        topics.iter().find(|t| t.name == "once").map(|t| t.retained)
    };
    assert_eq!(
        retained(client.list_topics().await.expect("list")),
        Some(3),
        "stored once"
    );
    // Without a producer id the retry is a new publish: documented duplicates.
    broker.publish(request(0)).await.expect("publish");
    broker.publish(request(0)).await.expect("retry");
    assert_eq!(retained(client.list_topics().await.expect("list")), Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_keep_their_promises_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("lk", 2).await.expect("topic");
    publish_keyed(&client, "lk", 300, 12).await;
    let key_shared = || mode(SubscriptionMode::KeyShared, 20);
    let mut consumers = vec![
        subscribe(&client, "lk", "ks", key_shared()).await,
        subscribe(&client, "lk", "ks", key_shared()).await,
    ];
    let mut order = KeyOrder::default();
    let mut done = BTreeSet::new();
    let leader = cluster.wait_for_leader(None).await;
    for round in 0..600 {
        if done.len() == 300 {
            break;
        }
        if round == 10 {
            // Messages are in flight to both consumers right now.
            cluster.kill(leader);
        }
        for consumer in &mut consumers {
            let mut batch = Vec::new();
            while let Some(delivery) = next_within(consumer, Duration::from_millis(50)).await {
                order.delivered(&delivery);
                batch.push(delivery);
                if batch.len() == 5 {
                    break;
                }
            }
            // An ack lost in the failover is retried by the next batch: the
            // messages come back and are acked again (acks are idempotent).
            if consumer.ack(&batch).await.is_ok() {
                order.acked(&batch);
                done.extend(batch.iter().map(text));
            }
        }
    }
    assert_eq!(
        done.len(),
        300,
        "every message processed after the failover"
    );
    assert_ne!(cluster.wait_for_leader(Some(leader)).await, leader);
}

/// Now by this machine's clock, which the nodes share in these tests.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64
}

/// A message with a key and properties.
fn with(key: &str, payload: &str, properties: Properties) -> Message {
    Message::new(payload.to_string())
        .with_key(key.to_string())
        .with_properties(properties)
}

/// A delayed message is never delivered before its time by the leader's
/// clock; the later message of its key waits for it (failover keeps order
/// per key), another key's passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_is_never_delivered_early_and_keeps_its_keys_order() {
    const DELAY_MS: u32 = 1_500;
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("later", 1).await.expect("topic");
    let delayed = Properties {
        delay_ms: Some(DELAY_MS),
        ..Properties::default()
    };
    let batch = vec![
        with("k", "delayed", delayed),
        with("k", "after it", Properties::default()),
        with("other", "other key", Properties::default()),
    ];
    // Attached first, so the other key's message goes out in the publish's
    // own apply, long before the delayed one is due.
    let mut consumer = client.subscribe("later", "s", 10).await.expect("subscribe");
    client.publish("later", batch).await.expect("publish");
    let first = next(&mut consumer).await;
    assert_eq!(text(&first), "other key");
    let due = first.publish_time_ms + u64::from(DELAY_MS);
    let second = next(&mut consumer).await;
    let received = now_ms();
    assert_eq!(text(&second), "delayed");
    assert!(received >= due, "delivered {} ms early", due - received);
    assert_eq!(text(&next(&mut consumer).await), "after it");
}

/// The leader dies with a delayed message not due yet, a message whose
/// TTL runs out during the election, prioritized messages and an
/// exclusive topic; afterwards the priorities still come highest first,
/// the delayed one still comes no earlier than its time and before the
/// later one of its key, the expired one is never delivered and is dead
/// lettered, and the exclusive topic still admits only its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_ttls_and_exclusive_topics_keep_their_promises_across_a_leader_kill() {
    const DELAY_MS: u32 = 4_000;
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("mix", 1).await.expect("topic");
    client.create_topic("mix-dlq", 1).await.expect("dlq topic");
    let owned = TopicOptions {
        exclusive: true,
        expires: Some(Duration::from_secs(10)),
        ..TopicOptions::default()
    };
    let mine = client
        .declare_server_named(1, owned)
        .await
        .expect("exclusive topic");
    client
        .publish(&mine, vec![Message::new("private")])
        .await
        .expect("publish to the exclusive topic");
    let batch = vec![
        with(
            "k",
            "delayed",
            Properties {
                delay_ms: Some(DELAY_MS),
                ..Properties::default()
            },
        ),
        with(
            "short",
            "expires",
            Properties {
                ttl_ms: Some(300),
                ..Properties::default()
            },
        ),
        with("k", "after it", Properties::default()),
        with("plain", "plain", Properties::default()),
    ];
    let positions = client.publish("mix", batch).await.expect("publish");
    assert_eq!(positions.len(), 4);
    let prioritized = TopicOptions {
        max_priority: 5,
        ..TopicOptions::default()
    };
    client
        .create_topic_with("mix-prio", 1, prioritized)
        .await
        .expect("topic");
    publish_prioritized(&client, "mix-prio", 21).await;

    let leader = cluster.wait_for_leader(None).await;
    cluster.kill(leader);
    cluster.wait_for_leader(Some(leader)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let options = SubscribeOptions {
        prefetch: 10,
        dead_letter_topic: Some("mix-dlq".into()),
        ..Default::default()
    };
    let mut consumer = subscribe(&client, "mix", "s", options).await;
    // "plain" may come before or after the delayed one, depending on how
    // long the election took; the other promises hold either way.
    let mut received = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut consumer).await;
        received.push((text(&delivery), delivery.publish_time_ms, now_ms()));
    }
    let order: Vec<&str> = received.iter().map(|(t, ..)| t.as_str()).collect();
    let at = |what: &str| order.iter().position(|t| *t == what).expect(what);
    assert!(at("delayed") < at("after it"), "key order: {order:?}");
    assert!(order.contains(&"plain"), "{order:?}");
    let (_, published_ms, received_ms) = &received[at("delayed")];
    let due = published_ms + u64::from(DELAY_MS);
    assert!(
        *received_ms >= due,
        "delivered {} ms early",
        due - received_ms
    );
    assert_quiet(
        &mut consumer,
        Duration::from_millis(500),
        "the expired message",
    )
    .await;
    let mut inspector = client
        .subscribe("mix-dlq", "inspect", 10)
        .await
        .expect("subscribe dlq");
    let dead = next(&mut inspector).await;
    assert_eq!(text(&dead), "expires");
    assert_eq!(
        dead.headers
            .get("x-raftmq-dead-letter-reason")
            .map(String::as_str),
        Some("expired")
    );

    let stranger = cluster.client();
    let refused = stranger
        .subscribe(&mine, "peek", 1)
        .await
        .expect_err("not the owner");
    assert_eq!(
        refused.code(),
        Some(raftmq_client::Code::FailedPrecondition),
        "{refused}"
    );
    let mut own = client.subscribe(&mine, "own", 1).await.expect("the owner");
    assert_eq!(text(&next(&mut own).await), "private");

    let mut by_priority = client
        .subscribe("mix-prio", "s", 1)
        .await
        .expect("subscribe");
    check_priority_order(&mut by_priority, 21).await;
}

/// A new subscription replays from an offset or from a time, in every
/// partition: it starts exactly where asked among what is retained (here
/// everything: the first subscription acks nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_replays_from_an_offset_or_a_time() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("replay", 1).await.expect("topic");
    publish_keyless(&client, "replay", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_keyless(&client, "replay", 5).await;
    let mut all = subscribe(&client, "replay", "all", SubscribeOptions::default()).await;
    let everything = take(&mut all, 10).await;
    let second_batch_ms = everything[5].publish_time_ms;
    assert!(second_batch_ms > everything[4].publish_time_ms);

    for (name, start, first) in [
        ("from-offset", StartAt::Offset(4), 4),
        ("from-time", StartAt::Time(second_batch_ms), 5),
        ("from-earliest", StartAt::Earliest, 0),
    ] {
        let options = SubscribeOptions {
            start,
            ..SubscribeOptions::default()
        };
        let mut consumer = subscribe(&client, "replay", name, options).await;
        let got = take(&mut consumer, 10 - first).await;
        let offsets: Vec<u64> = got.iter().map(|d| d.offset).collect();
        let expected: Vec<u64> = (first as u64..10).collect();
        assert_eq!(offsets, expected, "{name}");
        assert_quiet(&mut consumer, Duration::from_millis(300), name).await;
    }
}

/// Past `max_messages`, a drop-head topic keeps the newest and sends
/// exactly the overflow, oldest first, to the dead-letter topic with
/// reason `maxlen`; a reject-publish topic refuses exactly the publish
/// that would pass it, and keeps what it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_and_reject_publish_drop_or_refuse_exactly_the_overflow() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    let limited = |overflow| TopicOptions {
        max_messages: 5,
        overflow,
        ..TopicOptions::default()
    };
    client
        .create_topic_with("newest", 1, limited(Overflow::DropHead))
        .await
        .expect("topic");
    client
        .create_topic("newest-dlq", 1)
        .await
        .expect("dlq topic");
    client
        .create_topic_with("bounded", 1, limited(Overflow::RejectPublish))
        .await
        .expect("topic");
    let options = SubscribeOptions {
        dead_letter_topic: Some("newest-dlq".into()),
        ..Default::default()
    };
    // Creates the subscription; its consumer goes.
    drop(subscribe(&client, "newest", "s", options).await);

    for n in 0..8 {
        let message = Message::new(format!("m{n}"));
        client
            .publish("newest", vec![message.clone()])
            .await
            .expect("drop-head takes all");
        let bounded = client.publish("bounded", vec![message]).await;
        match n {
            0..5 => assert!(bounded.is_ok(), "m{n}: {bounded:?}"),
            _ => {
                let refused = bounded.expect_err("past the limit");
                assert_eq!(
                    refused.code(),
                    Some(raftmq_client::Code::ResourceExhausted),
                    "{refused}"
                );
            }
        }
    }
    let retained: BTreeMap<String, u64> = client
        .list_topics()
        .await
        .expect("list topics")
        .into_iter()
        .map(|t| (t.name, t.retained))
        .collect();
    assert_eq!(retained["newest"], 5);
    assert_eq!(retained["bounded"], 5);
    assert_eq!(retained["newest-dlq"], 3);

    let mut consumer = client
        .subscribe("newest", "s", 10)
        .await
        .expect("subscribe");
    let kept: Vec<String> = take(&mut consumer, 5).await.iter().map(text).collect();
    assert_eq!(kept, ["m3", "m4", "m5", "m6", "m7"]);
    let mut dead = client
        .subscribe("newest-dlq", "inspect", 10)
        .await
        .expect("subscribe");
    let dropped = take(&mut dead, 3).await;
    let payloads: Vec<String> = dropped.iter().map(text).collect();
    assert_eq!(payloads, ["m0", "m1", "m2"]);
    assert!(dropped.iter().all(|d| {
        d.headers
            .get("x-raftmq-dead-letter-reason")
            .map(String::as_str)
            == Some("maxlen")
    }));
}

/// Publishes, to a topic declared with `max_priority`, `count` messages of
/// keys `k0..k2` cycling through priorities 0..=6 (6 counts as the topic's
/// 5): payload `key/priority/n`.
async fn publish_prioritized(client: &Client, topic: &str, count: u32) {
    let messages = (0..count)
        .map(|n| {
            let (key, priority) = (format!("k{}", n % 3), n % 7);
            let properties = Properties {
                priority: Some(priority),
                ..Properties::default()
            };
            with(&key, &format!("{key}/{}/{n}", priority.min(5)), properties)
        })
        .collect();
    client.publish(topic, messages).await.expect("publish");
}

/// Takes `count` deliveries one at a time (prefetch 1, each acked before
/// the next is handed out) and checks the priority rule: never a lower
/// priority while a higher one waits, and within one priority each key in
/// the order published.
async fn check_priority_order(consumer: &mut Consumer, count: u32) {
    let mut last_priority = u32::MAX;
    let mut last_n: BTreeMap<(String, u32), u32> = BTreeMap::new();
    for _ in 0..count {
        let delivery = next(consumer).await;
        consumer.ack([&delivery]).await.expect("ack");
        let payload = text(&delivery);
        let parts: Vec<&str> = payload.split('/').collect();
        let (key, priority, n) = (
            parts[0].to_string(),
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
        );
        assert!(
            priority <= last_priority,
            "{payload} after priority {last_priority}"
        );
        last_priority = priority;
        let previous = last_n.insert((key, priority), n);
        assert!(
            previous.is_none_or(|p| p < n),
            "{payload} after n {previous:?}"
        );
    }
}

/// Everything published before the consumer comes: it gets the highest
/// priority first, and a key in order within a priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_highest_priority_goes_first_and_keys_keep_their_order_within_one() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    let options = TopicOptions {
        max_priority: 5,
        ..TopicOptions::default()
    };
    client
        .create_topic_with("prio", 2, options)
        .await
        .expect("topic");
    publish_prioritized(&client, "prio", 42).await;
    let mut consumer = client.subscribe("prio", "s", 1).await.expect("subscribe");
    check_priority_order(&mut consumer, 42).await;
    assert_quiet(
        &mut consumer,
        Duration::from_millis(300),
        "more than was published",
    )
    .await;
}

/// A stream keeps what was acked: a subscription created after another
/// acked everything still replays from an offset or a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_replays_what_was_acked() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    let stream = TopicOptions {
        stream: true,
        max_age: Some(Duration::from_secs(3600)),
        ..TopicOptions::default()
    };
    client
        .create_topic_with("events", 1, stream)
        .await
        .expect("topic");
    publish_keyless(&client, "events", 6).await;
    let mut first = subscribe(&client, "events", "first", SubscribeOptions::default()).await;
    let all = take(&mut first, 6).await;
    first.ack(&all).await.expect("ack");
    let options = SubscribeOptions {
        start: StartAt::Offset(2),
        ..SubscribeOptions::default()
    };
    let mut replay = subscribe(&client, "events", "replay", options).await;
    let offsets: Vec<u64> = take(&mut replay, 4)
        .await
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(offsets, [2, 3, 4, 5]);
    assert_quiet(&mut replay, Duration::from_millis(300), "replay").await;
}
