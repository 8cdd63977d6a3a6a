//! One flooding client cannot starve the others, on real `raftmq-node`
//! processes with the production defaults: a connection that keeps
//! publish streams and unary publishes as full as it can, and opens
//! consumers until it is refused, waits for its own work (its share of
//! commands and bytes awaiting commit) while another client's confirms stay
//! fast; and a connection past its HTTP/2 streams waits for one to close.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{value, Cluster};
use futures::StreamExt;
use raftmq_client::Message;
use raftmq_proto::v1::broker_client::BrokerClient;
use raftmq_proto::v1::{PublishRequest, SubscribeRequest};
use tonic::transport::Channel;

/// The other client's confirm p99 the flood may not push above. Its
/// confirms take a few milliseconds on an idle cluster; without the shares
/// they wait behind the flood's whole backlog (seconds: the note of the
/// change that added the shares has the figures).
const CALM_P99_MAX: Duration = Duration::from_millis(1_500);
/// The production default of a connection's consumer share
/// (`EdgeLimits::connection`).
const CONSUMERS_PER_CONNECTION: usize = 256;
/// Publish streams and unary publishes the flood keeps going at once on
/// its one connection: above the connection's 64 requests in handlers.
const FLOOD_STREAMS: usize = 4;
const FLOOD_UNARY: usize = 96;
/// Each flood request: 16 messages of 64 KiB.
const FLOOD_MESSAGES: usize = 16;
const FLOOD_MESSAGE_BYTES: usize = 64 * 1024;

fn flood_request(topic: &str) -> PublishRequest {
    let payload = bytes::Bytes::from(vec![7u8; FLOOD_MESSAGE_BYTES]);
    PublishRequest {
        topic: topic.into(),
        messages: (0..FLOOD_MESSAGES)
            .map(|_| Message::new(payload.clone()).into())
            .collect(),
        ..Default::default()
    }
}

/// Keeps one publish stream as full as the node lets it be, counting the
/// confirmed requests, until `until`.
async fn flood_stream(
    mut broker: BrokerClient<Channel>,
    confirmed: Arc<AtomicU64>,
    until: Instant,
) {
    let request = flood_request("flood");
    let requests = futures::stream::iter(std::iter::repeat(request))
        .take_while(move |_| futures::future::ready(Instant::now() < until));
    let Ok(responses) = broker.publish_stream(requests).await else {
        return;
    };
    let mut responses = responses.into_inner();
    while let Ok(Some(response)) = responses.message().await {
        if response.error.is_none() {
            confirmed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Unary publishes one after another on a clone of the flood's channel.
async fn flood_unary(mut broker: BrokerClient<Channel>, confirmed: Arc<AtomicU64>, until: Instant) {
    while Instant::now() < until {
        if broker.publish(flood_request("flood")).await.is_ok() {
            confirmed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flooding_publishes_and_consumers_does_not_starve_another_client() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    for topic in ["flood", "calm", "idle"] {
        client.create_topic(topic, 1).await.expect("topic");
    }
    let leader = cluster.wait_for_leader(None).await;
    let flood = BrokerClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect")
        .max_decoding_message_size(16 * 1024 * 1024)
        .max_encoding_message_size(16 * 1024 * 1024);

    // Consumers on the flood's connection: its share, then refused.
    let mut consumers = Vec::new();
    let refused = loop {
        let mut broker = flood.clone();
        let subscribe = SubscribeRequest {
            topic: "idle".into(),
            subscription: format!("s{}", consumers.len()),
            prefetch: 1,
            ..Default::default()
        };
        match broker.subscribe(subscribe).await {
            Ok(stream) => consumers.push(stream.into_inner()),
            Err(status) => break status,
        }
        assert!(
            consumers.len() <= CONSUMERS_PER_CONNECTION,
            "{} consumers attached on one connection",
            consumers.len()
        );
    };
    assert_eq!(consumers.len(), CONSUMERS_PER_CONNECTION, "{refused:?}");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused
            .message()
            .contains("this connection has 256 consumers"),
        "{refused:?}"
    );
    // Another client still subscribes.
    let mut calm_consumer = client
        .subscribe("calm", "calm", 16)
        .await
        .expect("another client subscribes");

    let flood_started = Instant::now();
    let until = flood_started + Duration::from_secs(14);
    let flooded = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..FLOOD_STREAMS {
        tasks.push(tokio::spawn(flood_stream(
            flood.clone(),
            flooded.clone(),
            until,
        )));
    }
    for _ in 0..FLOOD_UNARY {
        tasks.push(tokio::spawn(flood_unary(
            flood.clone(),
            flooded.clone(),
            until,
        )));
    }
    // Let the flood fill its share before the calm client starts; the calm
    // client publishes one message at a time, each awaited, for 10 s of
    // the flood (a publish stuck behind the flood counts in full).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calm = cluster.client();
    let calm_until = Instant::now() + Duration::from_secs(10);
    let mut latencies = Vec::new();
    while Instant::now() < calm_until {
        let started = Instant::now();
        calm.publish(
            "calm",
            vec![Message::new(format!("calm {}", latencies.len()))],
        )
        .await
        .expect("the calm client's publish is confirmed");
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flooded_during_calm = flooded.load(Ordering::Relaxed);
    assert!(
        Instant::now() < until,
        "the calm client's publishes outlasted the flood"
    );
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the flood ends")
            .expect("flood task");
    }
    latencies.sort();
    let at =
        |quantile: f64| latencies[((latencies.len() as f64 * quantile).ceil() as usize).max(1) - 1];
    let (p50, p99) = (at(0.50), at(0.99));
    let metrics = cluster.scrape(leader).await;
    let waited = value(&metrics, "raftmq_share_waits_total{share=\"connection\"}");
    eprintln!(
        "calm: {} confirms, p50 {p50:?}, p99 {p99:?}, max {:?}; flood: {} requests of {} KiB confirmed in {:?}, {waited} waits for its share",
        latencies.len(),
        latencies.last().expect("latencies"),
        flooded.load(Ordering::Relaxed),
        FLOOD_MESSAGES * FLOOD_MESSAGE_BYTES / 1024,
        flood_started.elapsed(),
    );
    assert!(
        flooded_during_calm > 0,
        "the flood itself got nothing confirmed"
    );
    assert!(
        waited > 0.0,
        "the flood never filled its connection's share"
    );
    assert!(
        p99 <= CALM_P99_MAX,
        "the calm client's confirm p99 is {p99:?} under the flood (bound {CALM_P99_MAX:?})"
    );
    // Every calm message is delivered to the other client's consumer.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut delivered = 0;
    while delivered < latencies.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, calm_consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                calm_consumer.ack(&[delivery]).await.expect("ack");
                delivered += 1;
            }
            other => panic!(
                "after {delivered} of {} calm deliveries: {other:?}",
                latencies.len()
            ),
        }
    }
    drop(consumers);
}

/// HTTP/2 streams one connection may have open at once (the node's
/// `STREAMS_PER_CONNECTION_MAX`).
const STREAMS_PER_CONNECTION: usize = 1_024;

/// Past its streams, a connection's next call waits (the client's HTTP/2
/// honours the node's limit) until one of its streams closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_streams_waits_until_one_closes() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader(None).await;
    let broker = BrokerClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect");
    // Publish streams that send nothing stay open: each holds a stream.
    let mut closers = Vec::new();
    let mut open = Vec::new();
    for _ in 0..STREAMS_PER_CONNECTION {
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let requests =
            futures::stream::once(closed).filter_map(|_| async { None::<PublishRequest> });
        let mut broker = broker.clone();
        let responses =
            tokio::time::timeout(Duration::from_secs(10), broker.publish_stream(requests))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "stream {} of {STREAMS_PER_CONNECTION} did not open",
                        open.len()
                    )
                })
                .expect("publish stream");
        open.push(responses.into_inner());
        closers.push(close);
    }
    let mut broker_past = broker.clone();
    let past = tokio::spawn(async move {
        broker_past
            .publish(PublishRequest {
                topic: "t".into(),
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!past.is_finished(), "a call past the streams was answered");
    // Ending one stream makes room.
    drop(closers.pop());
    let answer = tokio::time::timeout(Duration::from_secs(10), past)
        .await
        .expect("the waiting call goes once a stream closes")
        .expect("task");
    let status = answer.expect_err("an empty publish is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    drop(open);
}
