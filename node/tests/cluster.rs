//! The replicated core against real nodes: `raftmq-node` processes on
//! loopback, real sled directories, SIGKILL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use raftmq_client::{Code, Consumer, Declared, DeleteOptions, Delivery, Message, TopicOptions};

/// Receives until `done` says so or nothing arrives for `idle`, acking every
/// delivery in batches of `ack_batch` (at most the prefetch, or the consumer
/// starves); answers what arrived, in order.
async fn consume_until(
    consumer: &mut Consumer,
    ack_batch: usize,
    idle: Duration,
    mut done: impl FnMut(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let mut received: Vec<Delivery> = Vec::new();
    let mut unacked: Vec<Delivery> = Vec::new();
    // Bounded: each turn either receives or ends the loop after `idle`.
    while !done(&received) {
        match tokio::time::timeout(idle, consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                unacked.push(delivery.clone());
                received.push(delivery);
            }
            Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
            Ok(None) | Err(_) => break,
        }
        if unacked.len() >= ack_batch {
            consumer.ack(&unacked).await.expect("ack");
            unacked.clear();
        }
    }
    if !unacked.is_empty() {
        consumer.ack(&unacked).await.expect("ack");
    }
    received
}

fn payload(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_mid_stream_loses_no_confirmed_message_and_keeps_key_order() {
    const MESSAGES: u64 = 10_000;
    const KEYS: u64 = 50;
    const KILL_AFTER: u64 = 3_000;

    // A three-node cluster and a topic of four partitions.
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client
        .create_topic("orders", 4)
        .await
        .expect("create topic");
    let leader = cluster.wait_for_leader(None).await;

    // Publish keyed messages, each payload "key:n" with n rising per key;
    // SIGKILL the leader while thousands are still in flight.
    let producer = client.producer("orders");
    let mut confirms = Vec::new();
    for i in 0..MESSAGES {
        let (key, n) = (format!("k{}", i % KEYS), i / KEYS);
        let message = Message::new(format!("{key}:{n}")).with_key(key);
        confirms.push((i, producer.send(message).await.expect("send")));
        if i == KILL_AFTER {
            cluster.kill(leader);
        }
    }
    let mut confirmed = BTreeSet::new();
    for (i, confirm) in confirms {
        if confirm.await.is_ok() {
            confirmed.insert(format!("k{}:{}", i % KEYS, i / KEYS));
        }
    }
    let new_leader = cluster.wait_for_leader(Some(leader)).await;
    assert_ne!(new_leader, leader);
    // The producer resends through the new leader: every message confirms.
    assert_eq!(confirmed.len() as u64, MESSAGES, "confirmed after failover");

    // Consume everything from the new leader.
    let mut consumer = client
        .subscribe("orders", "audit", 1_000)
        .await
        .expect("subscribe");
    let mut seen = BTreeSet::new();
    let received = consume_until(&mut consumer, 256, Duration::from_secs(20), |got| {
        if let Some(last) = got.last() {
            seen.insert(payload(last));
        }
        confirmed.is_subset(&seen)
    })
    .await;

    // Every confirmed message was delivered.
    let delivered: BTreeSet<String> = received.iter().map(payload).collect();
    let missing: Vec<&String> = confirmed.difference(&delivered).take(10).collect();
    assert!(
        missing.is_empty(),
        "confirmed but never delivered: {missing:?}"
    );

    // Idempotent producer: a message resent after the failover was stored
    // once, so each arrives exactly once (one consumer, nothing returned).
    assert_eq!(received.len(), delivered.len(), "duplicates delivered");

    // Per key, messages arrive in publish order.
    let mut last_per_key: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen_once = BTreeSet::new();
    for delivery in &received {
        let text = payload(delivery);
        if !seen_once.insert(text.clone()) {
            continue;
        }
        let (key, n) = text.split_once(':').expect("key:n payload");
        let n: i64 = n.parse().expect("number");
        let last = last_per_key.entry(key.to_string()).or_insert(-1);
        assert!(n > *last, "key {key}: {n} delivered after {last}");
        *last = n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_all_nodes_keeps_every_confirmed_unacked_message() {
    const MESSAGES: usize = 500;
    const ACKED: usize = 100;

    // Confirmed messages on a three-node cluster that snapshots every ten
    // entries, so a restart loads a snapshot and replays the log after it.
    let mut cluster = Cluster::start(3, &["--snapshot-every", "10"]).await;
    let client = cluster.client();
    client.create_topic("jobs", 2).await.expect("create topic");
    let mut published = BTreeSet::new();
    for batch in 0..MESSAGES / 50 {
        let messages: Vec<Message> = (0..50)
            .map(|i| Message::new(format!("job-{}", batch * 50 + i)))
            .collect();
        let positions = client.publish("jobs", messages).await.expect("publish");
        assert_eq!(positions.len(), 50);
        published.extend((0..50).map(|i| format!("job-{}", batch * 50 + i)));
    }

    // Ack the first hundred deliveries; the rest stay unacknowledged.
    let mut consumer = client
        .subscribe("jobs", "workers", 10)
        .await
        .expect("subscribe");
    let acked: BTreeSet<String> =
        consume_until(&mut consumer, 10, Duration::from_secs(10), |got| {
            got.len() >= ACKED
        })
        .await
        .iter()
        .map(payload)
        .collect();
    assert_eq!(acked.len(), ACKED);
    drop(consumer);
    for id in 1..=3 {
        wait_for_snapshot(&cluster, id).await;
    }

    // SIGKILL every node, then start them all again on their data.
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    cluster.wait_for_leader(None).await;

    // Exactly the unacknowledged messages come back.
    let expected: BTreeSet<String> = published.difference(&acked).cloned().collect();
    let mut consumer = client
        .subscribe("jobs", "workers", 100)
        .await
        .expect("subscribe after restart");
    let mut seen = BTreeSet::new();
    let received = consume_until(&mut consumer, 50, Duration::from_secs(10), |got| {
        if let Some(last) = got.last() {
            seen.insert(payload(last));
        }
        expected.is_subset(&seen)
    })
    .await;
    let delivered: BTreeSet<String> = received.iter().map(payload).collect();
    assert_eq!(delivered, expected, "after a full restart");
}

/// What a message was sent as: key, payload, headers.
type Sent = (Option<Bytes>, Bytes, BTreeMap<String, String>);

/// A follower whose data directory is wiped rejoins by snapshot: it gets
/// the snapshot's records and, ahead of them, the log entries their bodies
/// are in (its own log has none of them). To show it holds every body, it
/// is then made the only node that can lead (the other two go, one comes
/// back wiped too, so it must catch up from the first one's import) and
/// serves every message, byte for byte, at the (partition, offset) it was
/// published at. Another topic holds enough records that the snapshot,
/// compressed, spans several of openraft's chunks (`snapshot_max_chunk_size`, left at
/// its default): it is sent, received into a file and installed a chunk
/// at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_rejoins_by_snapshot_with_the_bodies_and_serves_them_unchanged() {
    const BATCHES: usize = 30;
    const PER_BATCH: usize = 10;
    const BULK_BATCHES: usize = 400;
    const BULK_PER_BATCH: usize = 1000;
    let mut cluster = Cluster::start(3, &["--snapshot-every", "10"]).await;
    let client = cluster.client();
    client.create_topic("jobs", 3).await.expect("create topic");
    let mut published: BTreeMap<(u32, u64), Sent> = BTreeMap::new();
    for batch in 0..BATCHES {
        let sent: Vec<Sent> = (0..PER_BATCH)
            .map(|i| {
                let n = batch * PER_BATCH + i;
                let key = (!n.is_multiple_of(3)).then(|| Bytes::from(format!("key-{}", n % 7)));
                let payload = Bytes::from(format!("body {n} {}", "x".repeat(n % 40)));
                let headers = BTreeMap::from([("n".to_string(), n.to_string())]);
                (key, payload, headers)
            })
            .collect();
        let messages = sent.iter().map(|(key, payload, headers)| {
            let message = headers
                .iter()
                .fold(Message::new(payload.clone()), |m, (name, value)| {
                    m.with_header(name.clone(), value.clone())
                });
            match key {
                Some(key) => message.with_key(key.clone()),
                None => message,
            }
        });
        let positions = client
            .publish("jobs", messages.collect())
            .await
            .expect("publish");
        for (position, sent) in positions.into_iter().zip(sent) {
            published.insert((position.partition, position.offset), sent);
        }
    }
    assert_eq!(published.len(), BATCHES * PER_BATCH);
    // Taken by the rule by the log (every 10 entries) while the state is
    // small: once the bulk topic below retains its 400,000 records, that
    // rule waits for a log 16 times the snapshot.
    for id in 1..=3 {
        wait_for_snapshot(&cluster, id).await;
    }
    client.create_topic("bulk", 1).await.expect("create topic");
    // Each with a key of its own: a snapshot is compressed, and the keys'
    // hashes are what does not compress.
    for batch in 0..BULK_BATCHES {
        let bulk = (0..BULK_PER_BATCH)
            .map(|i| {
                Message::new(Bytes::from_static(b"b"))
                    .with_key(format!("k{}", batch * BULK_PER_BATCH + i))
            })
            .collect();
        client.publish("bulk", bulk).await.expect("publish");
    }

    // Past 1 MiB a snapshot waits for a log 16 times its size: ask each
    // node for one that holds everything, as whichever leads sends its own.
    for id in 1..=3 {
        client
            .take_snapshot(cluster.addr(id))
            .await
            .expect("take a snapshot");
    }
    let leader = cluster.wait_for_leader(None).await;
    let mut others = (1..=3).filter(|id| *id != leader);
    let (wiped, other) = (
        others.next().expect("a follower"),
        others.next().expect("another"),
    );
    let committed = cluster
        .status(leader)
        .await
        .and_then(|s| s.commit_index)
        .expect("the leader's commit index");
    cluster.kill(wiped);
    std::fs::remove_dir_all(cluster.data_dir(wiped)).expect("wipe");
    cluster.spawn(wiped);
    wait_applied(&cluster, wiped, committed).await;
    let imports = cluster.data_dir(wiped).join("imports");
    let imported = std::fs::read_dir(&imports)
        .map(|dirs| dirs.filter_map(Result::ok).any(|d| d.path().is_dir()))
        .unwrap_or(false);
    assert!(imported, "no import in {}", imports.display());
    // A leader that saw its follower's log go back stopped its core
    // when openraft's `loosen-follower-log-revert` was off, and the node
    // exited.
    for id in 1..=3 {
        assert!(cluster.is_running(id), "node {id} exited during the rejoin");
    }
    let chunk = openraft::Config::default().snapshot_max_chunk_size;
    let installed = std::fs::metadata(cluster.data_dir(wiped).join("raft-snapshot"))
        .expect("the installed snapshot")
        .len();
    assert!(
        installed > chunk,
        "a snapshot of {installed} bytes fits in one {chunk}-byte chunk"
    );

    cluster.kill(leader);
    cluster.kill(other);
    std::fs::remove_dir_all(cluster.data_dir(other)).expect("wipe");
    cluster.spawn(other);
    assert_eq!(cluster.wait_for_leader(None).await, wiped);
    cluster.wait_all_serving(Duration::from_secs(30)).await;

    let mut consumer = client
        .subscribe("jobs", "check", 100)
        .await
        .expect("subscribe");
    let received = consume_until(&mut consumer, 50, Duration::from_secs(10), |got| {
        got.len() >= published.len()
    })
    .await;
    let served: BTreeMap<(u32, u64), Sent> = received
        .into_iter()
        .map(|d| ((d.partition, d.offset), (d.key, d.payload, d.headers)))
        .collect();
    assert_eq!(served, published, "served by the node that was wiped");
}

/// A few old messages nobody consumed must not pin the log of a busy topic
/// beside them: with the defaults (a relocation frees 64 MiB at least, a
/// snapshot for the disk frees 32 MiB), 80 MiB published and consumed
/// after three stuck messages end as a log of a few segments on every
/// node, and the stuck messages are still served, byte for byte. Without
/// compaction every node keeps all 80 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_old_messages_do_not_pin_the_log_the_leader_copies_them_forward() {
    const BUSY_BYTES: usize = 80 * 1024 * 1024;
    const PER_PUBLISH: usize = 16;
    const MESSAGE_BYTES: usize = 4096;
    const LOG_AFTER_MAX: u64 = 48 * 1024 * 1024;
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("stuck", 1).await.expect("create topic");
    client.create_topic("busy", 1).await.expect("create topic");
    let stuck: Vec<Bytes> = (0..3)
        .map(|i| Bytes::from(format!("stuck {i} {}", "s".repeat(i * 100))))
        .collect();
    for payload in &stuck {
        client
            .publish("stuck", vec![Message::new(payload.clone())])
            .await
            .expect("publish stuck");
    }
    let publishes = BUSY_BYTES / (PER_PUBLISH * MESSAGE_BYTES);
    let mut consumer = client
        .subscribe("busy", "drain", 256)
        .await
        .expect("subscribe");
    for n in 0..publishes {
        let batch = (0..PER_PUBLISH)
            .map(|i| Message::new(Bytes::from(vec![(n + i) as u8; MESSAGE_BYTES])))
            .collect();
        client.publish("busy", batch).await.expect("publish busy");
    }
    let drained = consume_until(&mut consumer, 128, Duration::from_secs(10), |got| {
        got.len() >= publishes * PER_PUBLISH
    })
    .await;
    assert_eq!(drained.len(), publishes * PER_PUBLISH);
    drop(consumer);

    wait_for_logs_under(&cluster, LOG_AFTER_MAX).await;
    let mut consumer = client
        .subscribe("stuck", "late", 10)
        .await
        .expect("subscribe");
    let served = consume_until(&mut consumer, 1, Duration::from_secs(10), |got| {
        got.len() >= 3
    })
    .await;
    let served: Vec<Bytes> = served.into_iter().map(|d| d.payload).collect();
    assert_eq!(served, stuck, "the stuck messages, relocated");
}

/// Declaring is idempotent; deleting a topic ends its consumers' streams,
/// takes its messages, and (with the defaults: a snapshot for the disk
/// once 32 MiB can go) gives its log back on every node; deleting a
/// subscription drops what only it held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_takes_its_messages_consumers_and_log_with_it() {
    const PUBLISHES: usize = 1280;
    const PER_PUBLISH: usize = 16;
    const MESSAGE_BYTES: usize = 4096;
    const LOG_AFTER_MAX: u64 = 48 * 1024 * 1024;
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    let declared = client.create_topic("doomed", 1).await.expect("declare");
    assert_eq!(declared, Declared::Created);
    let again = client
        .create_topic("doomed", 1)
        .await
        .expect("declare again");
    assert_eq!(again, Declared::Existed);
    for n in 0..PUBLISHES {
        let batch = (0..PER_PUBLISH)
            .map(|i| Message::new(Bytes::from(vec![(n + i) as u8; MESSAGE_BYTES])))
            .collect();
        client.publish("doomed", batch).await.expect("publish");
    }
    let mut consumer = client
        .subscribe("doomed", "reader", 8)
        .await
        .expect("subscribe");
    consume_without_ack(&mut consumer, 8).await;
    for id in 1..=3 {
        let bytes = dir_bytes(&cluster.data_dir(id).join("log"));
        assert!(
            bytes > LOG_AFTER_MAX,
            "node {id}'s log holds only {bytes} bytes"
        );
    }

    for (options, refusal) in [
        (
            DeleteOptions {
                if_unused: true,
                ..DeleteOptions::default()
            },
            "1 consumer(s) attached",
        ),
        (
            DeleteOptions {
                if_empty: true,
                ..DeleteOptions::default()
            },
            "retains 20480 message(s)",
        ),
    ] {
        let error = client
            .delete_topic("doomed", options)
            .await
            .expect_err("refused");
        assert_eq!(error.code(), Some(Code::FailedPrecondition), "{error}");
        assert!(
            error.to_string().contains(refusal),
            "{error} lacks {refusal:?}"
        );
    }
    let deleted = client
        .delete_topic("doomed", DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(deleted, (PUBLISHES * PER_PUBLISH) as u64);
    // The stream ends; subscribing again finds no topic.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match consumer.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => break Some(error),
                None => break None,
            }
        }
    })
    .await
    .expect("the consumer's stream ended");
    if let Some(error) = ended {
        assert_eq!(error.code(), Some(Code::NotFound), "{error}");
    }
    let topics = client.list_topics().await.expect("list");
    assert!(topics.iter().all(|t| t.name != "doomed"), "{topics:?}");
    wait_for_logs_under(&cluster, LOG_AFTER_MAX).await;
    assert_eq!(
        client.create_topic("doomed", 1).await.expect("declare"),
        Declared::Created
    );

    client.create_topic("kept", 1).await.expect("declare");
    let mut fast = client
        .subscribe("kept", "fast", 10)
        .await
        .expect("subscribe");
    let slow = client
        .subscribe("kept", "slow", 10)
        .await
        .expect("subscribe");
    let published = client
        .publish(
            "kept",
            (0..3).map(|i| Message::new(format!("m{i}"))).collect(),
        )
        .await
        .expect("publish");
    let got = consume_without_ack(&mut fast, 3).await;
    client
        .ack("kept", "fast", got.iter().map(Delivery::position))
        .await
        .expect("ack");
    let retained = |topics: Vec<raftmq_client::TopicInfo>| {
        topics
            .into_iter()
            .find(|t| t.name == "kept")
            .map(|t| t.retained)
    };
    assert_eq!(retained(client.list_topics().await.expect("list")), Some(3));
    client
        .delete_subscription("kept", "slow")
        .await
        .expect("delete subscription");
    drop(slow);
    assert_eq!(retained(client.list_topics().await.expect("list")), Some(0));
    assert_eq!(published.len(), 3);
    let gone = client
        .delete_subscription("kept", "slow")
        .await
        .expect_err("gone");
    assert_eq!(gone.code(), Some(Code::NotFound), "{gone}");
}

/// `TakeSnapshot` (`raftmq cluster snapshot`) answers once the node asked
/// has written a snapshot covering everything it had applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_on_request_covers_everything_applied_before_it() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("t", 1).await.expect("create topic");
    client
        .publish("t", vec![Message::new(Bytes::from_static(b"x"))])
        .await
        .expect("publish");
    for id in 1..=3 {
        let applied = cluster.status(id).await.and_then(|s| s.applied_index);
        let taken = client
            .take_snapshot(cluster.addr(id))
            .await
            .expect("take a snapshot");
        assert!(
            Some(taken.snapshot_index) >= applied,
            "node {id}: snapshot at {} but {applied:?} applied before",
            taken.snapshot_index
        );
        let status = cluster.status(id).await.expect("status");
        assert!(status.snapshot_index >= Some(taken.snapshot_index));
    }
}

/// Waits (at most 60 seconds) until every node's log holds at most `max`
/// bytes.
async fn wait_for_logs_under(cluster: &Cluster, max: u64) {
    for id in 1..=3 {
        let log = cluster.data_dir(id).join("log");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let bytes = dir_bytes(&log);
            if bytes <= max {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}'s log still holds {bytes} bytes"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Waits (at most 30 seconds) until node `id` has applied `index`.
async fn wait_applied(cluster: &Cluster, id: u64, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let applied = cluster.status(id).await.and_then(|s| s.applied_index);
        if applied >= Some(index) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} applied {applied:?}, not {index}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most ten seconds) until node `id` reports a snapshot.
async fn wait_for_snapshot(cluster: &Cluster, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = cluster.metrics(id).await;
        let snapshotted = page
            .lines()
            .filter_map(|line| line.strip_prefix("raftmq_raft_snapshot_index "))
            .any(|value| value.parse::<f64>().is_ok_and(|index| index > 0.0));
        if snapshotted {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} took no snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("ok", 1).await.expect("create topic");
    client
        .publish("ok", vec![Message::new("one")])
        .await
        .expect("publish");

    let over_limit = Message::new(vec![b'x'; 1024 * 1024 + 1]);
    let cases = [
        (
            "a topic name with a space",
            client.create_topic("bad name", 1).await.err(),
            Code::InvalidArgument,
            "invalid topic name",
        ),
        (
            "a name only the server gives",
            client.create_topic("tmp.5", 1).await.err(),
            Code::InvalidArgument,
            "the server's to give",
        ),
        (
            "zero partitions",
            client.create_topic("zero", 0).await.err(),
            Code::InvalidArgument,
            "partitions must be",
        ),
        (
            "a topic declared again with other settings",
            client.create_topic("ok", 2).await.err(),
            Code::FailedPrecondition,
            "topic \"ok\" exists with partitions 1, not 2",
        ),
        (
            "a topic that must be new",
            client
                .create_topic_with(
                    "ok",
                    1,
                    TopicOptions {
                        fail_if_exists: true,
                        ..TopicOptions::default()
                    },
                )
                .await
                .err(),
            Code::AlreadyExists,
            "already exists",
        ),
        (
            "unknown topic",
            client.publish("nope", vec![Message::new("x")]).await.err(),
            Code::NotFound,
            "topic \"nope\" does not exist",
        ),
        (
            "message over the size limit",
            client.publish("ok", vec![over_limit]).await.err(),
            Code::InvalidArgument,
            "the limit is 1048576 bytes",
        ),
        (
            "ack on an unknown subscription",
            client
                .ack(
                    "ok",
                    "nobody",
                    [raftmq_client::Position {
                        partition: 0,
                        offset: 0,
                    }],
                )
                .await
                .err(),
            Code::NotFound,
            "subscription \"nobody\" does not exist",
        ),
        (
            "subscribe to an unknown topic",
            client.subscribe("nope", "s", 10).await.err(),
            Code::NotFound,
            "does not exist",
        ),
    ];
    for (what, error, code, text) in cases {
        let error = error.unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(error.code(), Some(code), "{what}: {error}");
        assert!(
            error.to_string().contains(text),
            "{what}: {error:?} lacks {text:?}"
        );
    }

    // Acks of deliveries that never happened, on a real subscription.
    let consumer = client.subscribe("ok", "s", 1).await.expect("subscribe");
    let never = client
        .ack(
            "ok",
            "s",
            [raftmq_client::Position {
                partition: 0,
                offset: 5,
            }],
        )
        .await
        .expect_err("ack beyond the end");
    assert_eq!(never.code(), Some(Code::NotFound), "{never}");
    drop(consumer);

    // The cluster is still healthy and serving, and its metrics say so:
    // exactly one node reports itself leader.
    let status = client
        .cluster_status(cluster.addr(1))
        .await
        .expect("status");
    assert!(status.leader_id.is_some());
    let mut leaders = 0;
    for id in 1..=3 {
        let page = cluster.metrics(id).await;
        assert!(
            page.contains("# TYPE raftmq_raft_term gauge"),
            "node {id}: {page}"
        );
        leaders += usize::from(page.lines().any(|line| line == "raftmq_raft_is_leader 1"));
    }
    assert_eq!(leaders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_consumers_messages_go_to_the_next_consumer_marked_redelivered() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("tasks", 1).await.expect("create topic");
    let messages: Vec<Message> = (0..20).map(|i| Message::new(format!("task-{i}"))).collect();
    client.publish("tasks", messages).await.expect("publish");

    // The first consumer takes five messages and goes away without acking.
    let mut first = client
        .subscribe("tasks", "workers", 5)
        .await
        .expect("subscribe");
    let taken = consume_without_ack(&mut first, 5).await;
    assert_eq!(
        taken.iter().map(|d| d.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    drop(first);

    // The next consumer gets those five again first, flagged, then the rest.
    let mut second = client
        .subscribe("tasks", "workers", 50)
        .await
        .expect("subscribe");
    let received = consume_until(&mut second, 50, Duration::from_secs(10), |got| {
        got.len() >= 20
    })
    .await;
    let offsets: Vec<u64> = received.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<u64>>());
    for delivery in &received {
        let again = delivery.offset < 5;
        assert_eq!(delivery.redelivered, again, "offset {}", delivery.offset);
        assert_eq!(
            delivery.attempts,
            if again { 2 } else { 1 },
            "offset {}",
            delivery.offset
        );
    }
}

/// Receives `count` deliveries without acking them.
async fn consume_without_ack(consumer: &mut Consumer, count: usize) -> Vec<Delivery> {
    let mut received = Vec::new();
    while received.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
            Ok(Some(Ok(delivery))) => received.push(delivery),
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
    received
}
