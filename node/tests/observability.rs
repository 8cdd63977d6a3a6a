//! What an operator sees of a running cluster, on real `raftmq-node`
//! processes with the production defaults: the Prometheus series named in
//! README's "Metrics" exist and move with the traffic.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Cluster;
use raftmq_client::{Delivery, Message};

/// A scraped page: each sample line's `name{labels}` and its value.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `series` (name with labels, exactly as the page writes it).
fn value(page: &BTreeMap<String, f64>, series: &str) -> f64 {
    *page
        .get(series)
        .unwrap_or_else(|| panic!("{series} not on the page"))
}

/// Every series name README lists, with or without labels.
const NAMED: &[&str] = &[
    "raftmq_node_id",
    "raftmq_raft_term",
    "raftmq_raft_is_leader",
    "raftmq_raft_leader_id",
    "raftmq_raft_elections_total",
    "raftmq_raft_leader_changes_total",
    "raftmq_raft_last_log_index",
    "raftmq_raft_commit_index",
    "raftmq_raft_applied_index",
    "raftmq_raft_snapshot_index",
    "raftmq_raft_replication_lag_entries",
    "raftmq_log_appends_total",
    "raftmq_log_entries_total",
    "raftmq_log_entry_bytes_total",
    "raftmq_log_fsyncs_total",
    "raftmq_log_fsync_seconds",
    "raftmq_snapshot_bytes",
    "raftmq_snapshot_build_seconds",
    "raftmq_topics",
    "raftmq_topic_retained_messages",
    "raftmq_topic_published_total",
    "raftmq_partition_retained_messages",
    "raftmq_partition_retained_bytes",
    "raftmq_partition_end_offset",
    "raftmq_subscription_depth",
    "raftmq_subscription_in_flight",
    "raftmq_subscription_consumers",
    "raftmq_subscription_delivered_total",
    "raftmq_subscription_acked_total",
    "raftmq_subscription_nacked_total",
    "raftmq_subscription_dead_lettered_total",
    "raftmq_subscription_expired_total",
    "raftmq_consumers",
    "raftmq_local_sessions",
    "raftmq_consumer_in_flight",
    "raftmq_consumer_prefetch",
    "raftmq_grpc_request_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// Sums the samples of `name` whose labels contain every `pairs` entry.
fn sum(page: &BTreeMap<String, f64>, name: &str, pairs: &[&str]) -> f64 {
    page.iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && pairs.iter().all(|p| series.contains(p))
        })
        .map(|(_, value)| value)
        .sum()
}

async fn take(consumer: &mut raftmq_client::Consumer, count: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.next()).await {
            Ok(Some(Ok(delivery))) => got.push(delivery),
            other => panic!("after {} of {count} deliveries: {other:?}", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_every_listed_series_and_move_with_publish_ack_and_an_election() {
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("metered", 2).await.expect("topic");
    let mut consumer = client
        .subscribe("metered", "workers", 100)
        .await
        .expect("subscribe");
    let leader = cluster.wait_for_leader(None).await;

    let before = samples(&cluster.metrics(leader).await);
    let workers = ["topic=\"metered\"", "subscription=\"workers\""];
    assert_eq!(sum(&before, "raftmq_subscription_depth", &workers), 0.0);

    let messages = (0..10).map(|n| Message::new(format!("m{n}"))).collect();
    client.publish("metered", messages).await.expect("publish");
    let held = take(&mut consumer, 10).await;
    let refused = client
        .publish("no-such-topic", vec![Message::new("x")])
        .await
        .expect_err("no such topic");
    eprintln!("refused as expected: {refused}");

    // Depth up after the publish (in flight counts until the ack), on
    // every node: the series come from the replicated state.
    for id in 1..=3 {
        let text = cluster.metrics(id).await;
        for name in NAMED {
            assert!(
                text.contains(&format!("\n# TYPE {name} ")),
                "node {id}: no {name} series"
            );
        }
        let page = samples(&text);
        assert_eq!(sum(&page, "raftmq_subscription_depth", &workers), 10.0, "node {id}");
        assert_eq!(sum(&page, "raftmq_subscription_in_flight", &workers), 10.0);
        assert_eq!(
            value(&page, "raftmq_topic_published_total{topic=\"metered\"}"),
            10.0
        );
        assert_eq!(
            sum(&page, "raftmq_partition_retained_messages", &["topic=\"metered\""]),
            10.0
        );
        assert_eq!(sum(&page, "raftmq_subscription_delivered_total", &workers), 10.0);
        assert_eq!(sum(&page, "raftmq_subscription_consumers", &workers), 1.0);
        assert!(value(&page, "process_resident_memory_bytes") > 0.0);
        assert!(value(&page, "raftmq_log_fsync_seconds_count") > 0.0);
    }

    // Down after the ack.
    consumer.ack(&held).await.expect("ack");
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = samples(&cluster.metrics(leader).await);
        if sum(&page, "raftmq_subscription_depth", &workers) == 0.0 || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sum(&page, "raftmq_subscription_depth", &workers), 0.0);
    assert_eq!(sum(&page, "raftmq_subscription_acked_total", &workers), 10.0);
    // The leader sees both followers and timed the requests, refusals by
    // their code.
    let lags = page
        .keys()
        .filter(|s| s.starts_with("raftmq_raft_replication_lag_entries{member="))
        .count();
    assert_eq!(lags, 2, "one replication lag per follower");
    let publish = "method=\"/raftmq.v1.Broker/Publish\"";
    assert!(sum(&page, "raftmq_grpc_request_seconds_count", &[publish, "code=\"Ok\""]) >= 1.0);
    assert!(
        sum(&page, "raftmq_grpc_request_seconds_count", &[publish, "code=\"NotFound\""]) >= 1.0,
        "no NotFound publish counted: {:?}",
        page.keys().filter(|s| s.contains("grpc_request_seconds_count")).collect::<Vec<_>>()
    );

    // An election raises the elections counter on the nodes that stay.
    drop(consumer);
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    let elections = value(&page_of(&cluster, survivor).await, "raftmq_raft_elections_total");
    cluster.kill(leader);
    let next = cluster.wait_for_leader(Some(leader)).await;
    let after = page_of(&cluster, survivor).await;
    assert!(
        value(&after, "raftmq_raft_elections_total") > elections,
        "node {survivor} counted no election after node {leader} died ({next} leads now)"
    );
    assert_eq!(value(&after, "raftmq_raft_leader_id"), next as f64);
}

async fn page_of(cluster: &Cluster, id: u64) -> BTreeMap<String, f64> {
    samples(&cluster.metrics(id).await)
}
