//! Restarts with the production defaults, on real `raftmq-node` processes:
//! a whole-cluster restart with a long log tail after the last snapshot, a
//! leader killed again and again, a node whose Raft core stops, SIGTERM
//! with clients attached, and clients that outlive a whole-cluster outage.
//!
//! Every cluster here runs the defaults (snapshot every 20,000 entries,
//! default batch and read sizes, timeouts): the bugs these tests are named
//! after never showed with the small settings other tests use.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::traffic::{consume, payload, Received, Traffic};
use common::{cluster_with_topic, Cluster};
use raftmq_client::{Client, Message};

/// The production snapshot interval (`raftmq-node run --snapshot-every`).
const SNAPSHOT_EVERY: u64 = 20_000;

/// Publishes one message per call from `tasks` concurrent callers (one
/// command per log entry, mostly) until `done` holds for every node's
/// status (each node snapshots at an index of its own); answers what was
/// confirmed. Bounded by `within`.
async fn publish_until(
    cluster: &Cluster,
    topic: &str,
    payload_bytes: usize,
    within: Duration,
    done: impl Fn(&raftmq_client::ClusterStatus) -> bool,
) -> BTreeSet<String> {
    const TASKS: usize = 32;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = cluster.client();
        let (stop, topic) = (stop.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let mut confirmed = BTreeSet::new();
            let padding = "x".repeat(payload_bytes);
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = format!("{payload_bytes}-{task}-{i}-{padding}");
                let message = Message::new(body.clone());
                client
                    .publish(&topic, vec![message])
                    .await
                    .expect("publish");
                confirmed.insert(body);
            }
            confirmed
        }));
    }
    let deadline = Instant::now() + within;
    loop {
        let mut all_done = true;
        for id in 1..=3 {
            all_done &= cluster.status(id).await.is_some_and(|s| done(&s));
        }
        if all_done {
            break;
        }
        assert!(Instant::now() < deadline, "publishing took over {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut confirmed = BTreeSet::new();
    for task in tasks {
        confirmed.extend(task.await.expect("publisher"));
    }
    confirmed
}

/// The segment files a node reads bodies from: its log's, and those of
/// the imports that came with installed snapshots (a follower that fell
/// behind under load gets the leader's snapshot, the bodies before it in
/// an import, and its own log starts after it).
fn segment_files(data_dir: &std::path::Path) -> (usize, usize) {
    let files = |dir: &std::path::Path| {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|e| e == "seg"))
                .count()
        })
    };
    let log = files(&data_dir.join("log"));
    let imported = std::fs::read_dir(data_dir.join("imports")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .map(|entry| files(&entry.path()))
            .sum()
    });
    (log, imported)
}

/// Every node's (last log index - last snapshot index).
async fn tails(cluster: &Cluster) -> Vec<u64> {
    let mut tails = Vec::new();
    for id in 1..=3 {
        let status = cluster.status(id).await.expect("status");
        let last = status.last_log_index.unwrap_or(0);
        tails.push(last.saturating_sub(status.snapshot_index.unwrap_or(0)));
    }
    tails
}

/// Receives (acking) on a new subscription until every one of `expected`
/// has arrived, or nothing arrives for `idle`; answers what is missing.
async fn missing_after_consuming(
    client: &Client,
    topic: &str,
    expected: &BTreeSet<String>,
    idle: Duration,
) -> BTreeSet<String> {
    let mut consumer = client
        .subscribe(topic, "check", 1000)
        .await
        .expect("subscribe");
    let mut missing = expected.clone();
    let mut unacked = Vec::new();
    // Bounded: each turn receives or ends the loop after `idle`.
    while !missing.is_empty() {
        match tokio::time::timeout(idle, consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                missing.remove(&payload(&delivery));
                unacked.push(delivery);
            }
            Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
            Ok(None) | Err(_) => break,
        }
        if unacked.len() >= 500 {
            consumer.ack(&unacked).await.expect("ack");
            unacked.clear();
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_more_than_20_000_entries_after_the_last_snapshot_comes_back() {
    // Phase 1: up to the first snapshot (20,000 entries), a retained
    // backlog of 4 KiB messages: the snapshot is large, and the log
    // crosses the default segment size (64 MiB).
    let (mut cluster, client) = cluster_with_topic("jobs", 4).await;
    let mut confirmed = publish_until(&cluster, "jobs", 4096, Duration::from_secs(300), |s| {
        s.snapshot_index.is_some()
    })
    .await;

    // Phase 2: more than 20,000 entries after the snapshot, of messages so
    // small that the log written since does not outweigh the snapshot: no
    // second snapshot, so a restart re-applies all of them.
    confirmed.extend(
        publish_until(&cluster, "jobs", 8, Duration::from_secs(300), |s| {
            let tail = s.last_log_index.unwrap_or(0) - s.snapshot_index.unwrap_or(0);
            tail > SNAPSHOT_EVERY + 500
        })
        .await,
    );
    let tails_before = tails(&cluster).await;
    eprintln!("entries after each node's last snapshot: {tails_before:?}");
    assert!(tails_before.iter().all(|tail| *tail > SNAPSHOT_EVERY));
    for id in 1..=3 {
        let (log, imported) = segment_files(&cluster.data_dir(id));
        eprintln!("node {id}: {log} log segment(s), {imported} imported");
        assert!(
            log + imported >= 2,
            "node {id}: {log} log segment(s), {imported} imported"
        );
    }

    // Phase 3: SIGKILL all three and start them again: each re-applies its
    // tail and serves.
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    cluster.wait_all_serving(Duration::from_secs(60)).await;

    // Phase 4: one node killed and restarted twice in a row, the leader
    // first, so that it also comes back as a follower.
    let node = cluster.wait_for_leader(None).await;
    for _ in 0..2 {
        cluster.kill(node);
        cluster.spawn(node);
        cluster.wait_all_serving(Duration::from_secs(60)).await;
    }

    // Phase 5: every confirmed message is delivered.
    let missing =
        missing_after_consuming(&client, "jobs", &confirmed, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "{} of {} confirmed messages not delivered",
        missing.len(),
        confirmed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_every_5_s_twenty_times_loses_nothing_and_the_cluster_serves_on() {
    const KILLS: usize = 20;
    let (mut cluster, client) = cluster_with_topic("orders", 2).await;
    let traffic = Traffic::start(&client, "orders", 200).await;

    // SIGKILL the leader every 5 s and start it again 2 s later.
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = cluster.wait_for_leader(None).await;
        eprintln!("kill {kill}: node {leader}");
        cluster.kill(leader);
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.spawn(leader);
    }

    // All three serve again, and nothing confirmed is lost.
    cluster.wait_all_serving(Duration::from_secs(60)).await;
    traffic
        .finish(Duration::from_secs(60))
        .await
        .report(&format!("{KILLS} leader kills"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_within_5_s_while_clients_are_attached() {
    let (mut cluster, client) = cluster_with_topic("orders", 2).await;
    let traffic = Traffic::start(&client, "orders", 200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The leader holds the consumer's stream and the producer's stream;
    // then a follower. Each exits 0 within 5 s and starts again.
    let leader = cluster.wait_for_leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    for node in [leader, follower] {
        let started = Instant::now();
        let exit = cluster.terminate(node, Duration::from_secs(5));
        let took = started.elapsed();
        assert!(
            exit.is_some_and(|status| status.success()),
            "node {node} after SIGTERM: {exit:?} after {took:?}; its log:\n{}",
            cluster.log(node)
        );
        eprintln!("node {node} exited 0 {took:?} after SIGTERM");
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.spawn(node);
        cluster.wait_all_serving(Duration::from_secs(30)).await;
    }

    // The clients carried on through the other nodes.
    traffic
        .finish(Duration::from_secs(60))
        .await
        .report("SIGTERM of the leader, then of a follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_off_a_call_still_waiting_for_its_commit_after_the_grace() {
    // A leader without its quorum: a publish to it waits for a commit that
    // cannot come (up to the 10 s commit timeout), holding its connection.
    let (mut cluster, _client) = cluster_with_topic("jobs", 1).await;
    let leader = cluster.wait_for_leader(None).await;
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.kill(id);
    }
    let stuck = Client::connect(vec![cluster.addr(leader).to_string()]).expect("client");
    let waiting = tokio::spawn(async move {
        stuck
            .publish("jobs", vec![Message::new("never committed")])
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGTERM: the graceful stop gives up on that call after its grace
    // (2 s) and still exits 0, well within 5 s.
    let exit = cluster.terminate(leader, Duration::from_secs(5));
    let log = cluster.log(leader);
    assert!(
        exit.is_some_and(|status| status.success()),
        "leader after SIGTERM: {exit:?}; its log:\n{log}"
    );
    assert!(
        log.contains("connections still open after the grace period"),
        "the call did not outlast the grace: {log}"
    );
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outlive_a_60_s_outage_of_the_whole_cluster() {
    let (mut cluster, client) = cluster_with_topic("orders", 2).await;
    let received = Arc::new(Mutex::new(Received::default()));
    let consumer = client
        .subscribe("orders", "audit", 100)
        .await
        .expect("subscribe");
    let consuming = tokio::spawn(consume(consumer, received.clone()));
    let producer = client.producer("orders");

    // Phase 1: before the outage.
    let mut confirms = Vec::new();
    for i in 0..50 {
        confirms.push(producer.send(Message::new(format!("before-{i}"))).await);
    }

    // Phase 2: every node down for 60 s; messages sent meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    for i in 0..50 {
        confirms.push(producer.send(Message::new(format!("during-{i}"))).await);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;

    // Phase 3: back up. What was sent during the outage is confirmed, and
    // the consumer attached before it gets everything, also what is
    // published after, without subscribing again.
    for id in 1..=3 {
        cluster.spawn(id);
    }
    for i in 0..50 {
        confirms.push(producer.send(Message::new(format!("after-{i}"))).await);
    }
    let mut expected = BTreeSet::new();
    for (i, confirm) in confirms.into_iter().enumerate() {
        let confirm = confirm.expect("send");
        let waited = tokio::time::timeout(Duration::from_secs(60), confirm).await;
        match waited {
            Ok(Ok(_)) => {}
            other => panic!("message {i} not confirmed after the outage: {other:?}"),
        }
    }
    for phase in ["before", "during", "after"] {
        expected.extend((0..50).map(|i| format!("{phase}-{i}")));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<String> = {
            let received = received.lock().expect("lock");
            expected.difference(&received.payloads).cloned().collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            !consuming.is_finished(),
            "the consumer stopped during the outage"
        );
        assert!(
            Instant::now() < deadline,
            "not delivered after the outage: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consuming.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_raft_core_stops_exits_non_zero_and_fails_its_health_check() {
    let (mut cluster, client) = cluster_with_topic("jobs", 1).await;

    // Phase 1: the health check passes for a serving node...
    let leader = cluster.wait_for_leader(None).await;
    let (healthy, said) = cluster.health(leader, &[]);
    assert!(healthy, "health of a serving leader: {said}");

    // ...and fails for a node that has known no leader for too long: a
    // follower left alone when the leader and the other follower are
    // killed. (An openraft 0.9 leader cut off from its quorum keeps its
    // role: it does not step down, so it is not caught this way.)
    let alone = (1..=3).find(|id| *id != leader).expect("a follower");
    let others: Vec<u64> = (1..=3).filter(|id| *id != alone).collect();
    for id in &others {
        cluster.kill(*id);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (healthy, said) = cluster.health(alone, &["--leaderless-max-secs", "1"]);
        if !healthy {
            assert!(said.contains("no leader known"), "{said}");
            break;
        }
        assert!(Instant::now() < deadline, "still healthy alone: {said}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in &others {
        cluster.spawn(*id);
    }
    cluster.wait_all_serving(Duration::from_secs(30)).await;

    // Phase 2: a follower misses some entries; then the leader's log is
    // damaged on disk under it, so reading those entries for the follower
    // fails: openraft stops the leader's Raft core.
    let leader = cluster.wait_for_leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.kill(follower);
    for i in 0..20 {
        client
            .publish("jobs", vec![Message::new(format!("m-{i}"))])
            .await
            .expect("publish");
    }
    let log_dir = cluster.data_dir(leader).join("log");
    for segment in std::fs::read_dir(&log_dir).expect("log dir") {
        let path = segment.expect("segment").path();
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open segment");
        let length = file.metadata().expect("metadata").len();
        file.set_len(0).expect("cut");
        file.set_len(length).expect("zeros");
    }
    cluster.spawn(follower);

    // The leader exits non-zero, saying why; its health check fails.
    let exit = cluster.wait_exit(leader, Duration::from_secs(30));
    let log = cluster.log(leader);
    assert!(
        exit.is_some_and(|status| !status.success()),
        "leader after its raft core stopped: {exit:?}; its log:\n{log}"
    );
    assert!(log.contains("raft core stopped"), "{log}");
    let (healthy, said) = cluster.health(leader, &[]);
    assert!(!healthy, "health of a node whose raft core stopped: {said}");
}
