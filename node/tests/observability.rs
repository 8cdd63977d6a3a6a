//! What an operator sees of a running cluster, on real `raftmq-node`
//! processes with the production defaults: the Prometheus series named in
//! README's "Metrics" exist and move with the traffic.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{samples, value, Cluster};
use raftmq_client::{Delivery, Message};

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

    for id in 1..=3 {
        let log = cluster.log(id);
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert!(
            errors.is_empty(),
            "node {id} logged errors at start: {errors:#?}"
        );
    }
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
        assert_eq!(
            sum(&page, "raftmq_subscription_depth", &workers),
            10.0,
            "node {id}"
        );
        assert_eq!(sum(&page, "raftmq_subscription_in_flight", &workers), 10.0);
        assert_eq!(
            value(&page, "raftmq_topic_published_total{topic=\"metered\"}"),
            10.0
        );
        assert_eq!(
            sum(
                &page,
                "raftmq_partition_retained_messages",
                &["topic=\"metered\""]
            ),
            10.0
        );
        assert_eq!(
            sum(&page, "raftmq_subscription_delivered_total", &workers),
            10.0
        );
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
    assert_eq!(
        sum(&page, "raftmq_subscription_acked_total", &workers),
        10.0
    );
    // The leader sees both followers and timed the requests, refusals by
    // their code.
    let lags = page
        .keys()
        .filter(|s| s.starts_with("raftmq_raft_replication_lag_entries{member="))
        .count();
    assert_eq!(lags, 2, "one replication lag per follower");
    let publish = "method=\"/raftmq.v1.Broker/Publish\"";
    assert!(
        sum(
            &page,
            "raftmq_grpc_request_seconds_count",
            &[publish, "code=\"Ok\""]
        ) >= 1.0
    );
    assert!(
        sum(
            &page,
            "raftmq_grpc_request_seconds_count",
            &[publish, "code=\"NotFound\""]
        ) >= 1.0,
        "no NotFound publish counted: {:?}",
        page.keys()
            .filter(|s| s.contains("grpc_request_seconds_count"))
            .collect::<Vec<_>>()
    );

    // An election raises the elections counter on the nodes that stay.
    drop(consumer);
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    let elections = value(
        &cluster.scrape(survivor).await,
        "raftmq_raft_elections_total",
    );
    cluster.kill(leader);
    let next = cluster.wait_for_leader(Some(leader)).await;
    let after = cluster.scrape(survivor).await;
    assert!(
        value(&after, "raftmq_raft_elections_total") > elections,
        "node {survivor} counted no election after node {leader} died ({next} leads now)"
    );
    assert_eq!(value(&after, "raftmq_raft_leader_id"), next as f64);
}

/// Debian's chromium, if installed. CI installs it (`.ci/run`), so there a
/// missing browser fails the test; elsewhere the test says it is skipped.
fn chromium() -> Option<std::path::PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|name| std::path::Path::new("/usr/bin").join(name))
        .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no chromium in /usr/bin: apt-get install chromium"
        );
        eprintln!("skipped: no chromium in /usr/bin (apt-get install chromium)");
    }
    found
}

/// Runs headless chromium on `url` with `args`, bounded in time: its
/// standard output.
fn browse(
    browser: &std::path::Path,
    profile: &std::path::Path,
    url: &str,
    args: &[&str],
) -> String {
    let mut child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=6000")
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("chromium").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("chromium output");
    out
}

/// The row of the table with `id` whose `data-` attributes say `marks`.
fn row_of<'a>(dom: &'a str, table: &str, marks: &str) -> &'a str {
    let table_at = dom
        .find(&format!("id=\"{table}\""))
        .unwrap_or_else(|| panic!("no table {table} in the page: {dom}"));
    let rest = &dom[table_at..];
    let at = rest
        .find(marks)
        .unwrap_or_else(|| panic!("no row {marks} in table {table}: {rest}"));
    let row = &rest[at..];
    &row[..row.find("</tr>").unwrap_or(row.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_topic_created_with_its_depth_in_a_real_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("browsed", 2).await.expect("topic");
    let consumer = client
        .subscribe("browsed", "viewers", 10)
        .await
        .expect("subscribe");
    drop(consumer);
    let messages = (0..7).map(|n| Message::new(format!("m{n}"))).collect();
    client.publish("browsed", messages).await.expect("publish");
    let follower = {
        let leader = cluster.wait_for_leader(None).await;
        (1..=3).find(|id| *id != leader).expect("a follower")
    };
    // A follower's page: the replicated state shows there too.
    let url = format!("http://{}/", cluster.metrics_addr(follower));
    let profile = tempfile::TempDir::new().expect("browser profile");

    let dom = browse(&browser, profile.path(), &url, &["--dump-dom"]);
    let topic = row_of(&dom, "topics", "data-topic=\"browsed\"");
    assert!(
        topic.contains("<td class=\"depth\">7</td>"),
        "topic row: {topic}"
    );
    let subscription = row_of(&dom, "subscriptions", "data-subscription=\"viewers\"");
    assert!(
        subscription.contains("<td class=\"depth\">7</td>"),
        "subscription row: {subscription}"
    );
    assert!(
        dom.contains(&format!("node {follower} (follower)")),
        "summary: {dom}"
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &browser,
        profile.path(),
        &url,
        &[
            "--window-size=1100,1000",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {}", shot.display());
    println!("status page screenshot: {}", shot.display());
    eprintln!("status page screenshot: {}", shot.display());
}

/// `--log-format json` writes one JSON object per line, and a normal start
/// logs no ERROR (in either format: the metrics test reads text logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_a_normal_start_logs_no_error() {
    let cluster = Cluster::start(3, &["--log-format", "json"]).await;
    let client = cluster.client();
    client.create_topic("logged", 1).await.expect("topic");
    client
        .publish("logged", vec![Message::new("x")])
        .await
        .expect("publish");
    for id in 1..=3 {
        let log = cluster.log(id);
        let mut lines = 0;
        for line in log.lines().filter(|line| !line.trim().is_empty()) {
            let object: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("node {id}: not JSON ({e}): {line}"));
            let level = object["level"].as_str().unwrap_or_default();
            assert!(object["timestamp"].is_string(), "node {id}: {line}");
            assert_ne!(level, "ERROR", "node {id}: {line}");
            lines += 1;
        }
        assert!(lines > 0, "node {id} logged nothing");
    }
}

/// A voter down is part of a cluster's life, not an error of the others:
/// with node 3 killed, the leader's replication to it fails and, once
/// nodes 1 and 2 are restarted, their elections ask it for votes in vain.
/// Neither logs an ERROR (openraft's for each failed RPC are filtered);
/// the leader says once that the peer is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_and_replication_with_a_voter_down_log_no_error() {
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("down", 1).await.expect("topic");
    cluster.kill(3);
    for id in [1, 2] {
        cluster.kill(id);
        cluster.spawn(id);
    }
    let leader = cluster.wait_for_leader(None).await;
    for i in 0..20 {
        client
            .publish("down", vec![Message::new(format!("m{i}"))])
            .await
            .expect("publish with a voter down");
    }
    // Replication to node 3 goes on failing and backing off meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in [1, 2] {
        let log = cluster.log(id);
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert!(errors.is_empty(), "node {id} logged errors: {errors:#?}");
    }
    let unreachable = cluster
        .log(leader)
        .lines()
        .filter(|line| line.contains("peer unreachable") && line.contains("target_node=3"))
        .count();
    assert!(
        (1..=5).contains(&unreachable),
        "the leader said {unreachable} times that node 3 is unreachable"
    );
}
