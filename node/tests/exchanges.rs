//! Exchanges and bindings against real nodes, with the production
//! defaults: each exchange type routes exactly the expected messages to
//! exactly the expected topics, and the exchanges survive a snapshot and a
//! restart of every node.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Cluster;
use raftmq_client::{
    Binding, Client, ClientError, Code, ExchangeKind, ExchangeOptions, Message, Routed,
};

/// Publishes one message per routing key through `exchange`, each with
/// payload `"{label}:{routing key}"`: where each went.
async fn publish(client: &Client, exchange: &str, label: &str, keys: &[&str]) -> Vec<Routed> {
    let mut routed = Vec::new();
    for key in keys {
        let message = Message::new(format!("{label}:{key}"));
        let mut outcome = client
            .publish_to_exchange(exchange, key, vec![message], false)
            .await
            .expect("publish through the exchange");
        routed.append(&mut outcome);
    }
    routed
}

/// Every payload `topic` holds, read by a fresh subscription that then
/// hears nothing more for a moment: exactly what was routed there.
async fn contents(client: &Client, topic: &str) -> BTreeSet<String> {
    let mut consumer = client
        .subscribe(topic, "check", 1000)
        .await
        .expect("subscribe");
    let retained = client
        .list_topics()
        .await
        .expect("list topics")
        .into_iter()
        .find(|t| t.name == topic)
        .map_or(0, |t| t.retained);
    let mut got = BTreeSet::new();
    for _ in 0..retained {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery within 10 s")
            .expect("the stream is open")
            .expect("a delivery");
        got.insert(String::from_utf8_lossy(&delivery.payload).into_owned());
    }
    let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(more.is_err(), "{topic}: more than its {retained} retained");
    got
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn declare(client: &Client, name: &str, kind: ExchangeKind, alternate: Option<&str>) {
    let options = ExchangeOptions {
        alternate: alternate.map(str::to_string),
        fail_if_exists: false,
    };
    client
        .declare_exchange(name, kind, options)
        .await
        .expect("declare exchange");
}

async fn topics(client: &Client, names: &[&str]) {
    for name in names {
        client.create_topic(name, 2).await.expect("create topic");
    }
}

async fn bind(client: &Client, exchange: &str, topic: &str, key: &str) {
    client
        .bind(exchange, &Binding::key(topic, key))
        .await
        .expect("bind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_route_exactly_what_their_bindings_say_and_survive_a_restart() {
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();

    // Direct, and one topic (`all`) bound twice to one exchange and once
    // to a fanout: it gets each message once per exchange publish.
    topics(&client, &["errors", "all", "fan1", "fan2"]).await;
    declare(&client, "logs", ExchangeKind::Direct, None).await;
    bind(&client, "logs", "errors", "error").await;
    bind(&client, "logs", "all", "error").await;
    bind(&client, "logs", "all", "info").await;
    declare(&client, "fan", ExchangeKind::Fanout, None).await;
    for topic in ["fan1", "fan2", "all"] {
        bind(&client, "fan", topic, "").await;
    }
    let routed = publish(&client, "logs", "d", &["error", "info", "debug"]).await;
    let reached = |routed: &Routed| -> Vec<String> {
        match routed {
            Routed::To(placements) => placements.iter().map(|(t, _)| t.clone()).collect(),
            other => panic!("expected a placement, got {other:?}"),
        }
    };
    assert_eq!(
        reached(&routed[0]),
        vec!["all".to_string(), "errors".into()]
    );
    assert_eq!(reached(&routed[1]), vec!["all".to_string()]);
    assert_eq!(routed[2], Routed::Dropped);
    publish(&client, "fan", "f", &["whatever"]).await;

    // Topic patterns: `*`, `#` alone, `#` in the middle, empty words.
    topics(&client, &["star", "hash", "middle", "empty-word"]).await;
    declare(&client, "events", ExchangeKind::Topic, None).await;
    bind(&client, "events", "star", "a.*").await;
    bind(&client, "events", "hash", "#").await;
    bind(&client, "events", "middle", "a.#.b").await;
    bind(&client, "events", "empty-word", "a.*.b").await;
    let keys = ["a.x", "a.b", "a.x.y.b", "", "a..b", "b"];
    publish(&client, "events", "t", &keys).await;

    // Headers: all and any.
    topics(&client, &["h-all", "h-any"]).await;
    declare(&client, "by-headers", ExchangeKind::Headers, None).await;
    let all = Binding::headers(
        "h-all",
        [("x-match", "all"), ("format", "pdf"), ("type", "report")],
    );
    let any = Binding::headers(
        "h-any",
        [("x-match", "any"), ("format", "pdf"), ("type", "log")],
    );
    client.bind("by-headers", &all).await.expect("bind all");
    client.bind("by-headers", &any).await.expect("bind any");
    for (name, headers) in [
        ("pdf-report", vec![("format", "pdf"), ("type", "report")]),
        ("pdf-log", vec![("format", "pdf"), ("type", "log")]),
        ("zip-log", vec![("format", "zip"), ("type", "log")]),
        ("zip", vec![("format", "zip")]),
    ] {
        let message = headers
            .into_iter()
            .fold(Message::new(format!("h:{name}")), |m, (k, v)| {
                m.with_header(k, v)
            });
        client
            .publish_to_exchange("by-headers", "", vec![message], false)
            .await
            .expect("publish by headers");
    }

    // Mandatory: returned, stored nowhere. An alternate takes what its
    // exchange cannot route.
    let returned = client
        .publish_to_exchange("logs", "nowhere", vec![Message::new("m:nowhere")], true)
        .await
        .expect("publish mandatory");
    assert_eq!(returned, vec![Routed::Returned]);
    topics(&client, &["unrouted"]).await;
    declare(&client, "spare", ExchangeKind::Fanout, None).await;
    bind(&client, "spare", "unrouted", "").await;
    declare(&client, "with-spare", ExchangeKind::Direct, Some("spare")).await;
    publish(&client, "with-spare", "a", &["nobody"]).await;
    // The default exchange: the topic the routing key names.
    publish(&client, "", "default", &["errors"]).await;

    // Declaring again is fine; a different type is refused, naming it.
    declare(&client, "logs", ExchangeKind::Direct, None).await;
    let mismatch = client
        .declare_exchange("logs", ExchangeKind::Topic, ExchangeOptions::default())
        .await
        .expect_err("a different type");
    assert_eq!(
        mismatch.code(),
        Some(Code::FailedPrecondition),
        "{mismatch}"
    );
    assert!(mismatch.to_string().contains("kind"), "{mismatch}");
    let in_use = client
        .delete_exchange("logs", true)
        .await
        .expect_err("in use");
    assert_eq!(in_use.code(), Some(Code::FailedPrecondition), "{in_use}");
    let unknown = client
        .publish_to_exchange("missing", "k", vec![Message::new("x")], false)
        .await
        .expect_err("no such exchange");
    assert!(
        matches!(
            unknown,
            ClientError::Rpc {
                code: Code::NotFound,
                ..
            }
        ),
        "{unknown}"
    );

    // Every node snapshots, then all of them restart: the exchanges come
    // back from the snapshot as they were, and still route.
    let before = client.list_exchanges().await.expect("list exchanges");
    for id in 1..=3 {
        client
            .take_snapshot(cluster.addr(id))
            .await
            .expect("take a snapshot");
    }
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    cluster.wait_for_leader(None).await;
    cluster.wait_all_serving(Duration::from_secs(30)).await;
    let client = cluster.client();
    let after = client.list_exchanges().await.expect("list exchanges");
    assert_eq!(after, before, "exchanges after a restart");
    let unroutable: BTreeMap<&str, u64> = after
        .iter()
        .map(|e| (e.name.as_str(), e.unroutable))
        .collect();
    assert_eq!(unroutable["logs"], 2, "debug dropped, nowhere returned");
    assert_eq!(unroutable["by-headers"], 1, "zip matched nothing");
    assert_eq!(unroutable["with-spare"], 0, "the alternate took it");
    publish(&client, "logs", "r", &["error"]).await;

    let expected: [(&str, &[&str]); 11] = [
        ("errors", &["d:error", "r:error", "default:errors"]),
        ("all", &["d:error", "d:info", "f:whatever", "r:error"]),
        ("fan1", &["f:whatever"]),
        ("fan2", &["f:whatever"]),
        ("star", &["t:a.x", "t:a.b"]),
        (
            "hash",
            &["t:a.x", "t:a.b", "t:a.x.y.b", "t:", "t:a..b", "t:b"],
        ),
        ("middle", &["t:a.b", "t:a.x.y.b", "t:a..b"]),
        ("empty-word", &["t:a..b"]),
        ("h-all", &["h:pdf-report"]),
        ("h-any", &["h:pdf-report", "h:pdf-log", "h:zip-log"]),
        ("unrouted", &["a:nobody"]),
    ];
    for (topic, payloads) in expected {
        assert_eq!(
            contents(&client, topic).await,
            set(payloads),
            "topic {topic}"
        );
    }
}

/// A subscription that dead-letters through an exchange: a rejected
/// message reaches the topic bound with the configured routing key, with
/// its reason, on real nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_goes_through_the_dead_letter_exchange() {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    topics(&client, &["work", "retry-later"]).await;
    declare(&client, "dlx", ExchangeKind::Direct, None).await;
    bind(&client, "dlx", "retry-later", "failed").await;
    let options = raftmq_client::SubscribeOptions {
        dead_letter_exchange: Some("dlx".into()),
        dead_letter_routing_key: Some("failed".into()),
        ..Default::default()
    };
    let mut consumer = client
        .subscribe_with("work", "s", options)
        .await
        .expect("subscribe");
    client
        .publish("work", vec![Message::new("bad")])
        .await
        .expect("publish");
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery")
        .expect("open")
        .expect("delivered");
    let reject = raftmq_client::NackOptions {
        reject: true,
        ..Default::default()
    };
    consumer
        .nack_with([&delivery], reject)
        .await
        .expect("reject");
    let mut dead = client
        .subscribe("retry-later", "inspect", 1)
        .await
        .expect("subscribe");
    let letter = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .expect("a dead letter")
        .expect("open")
        .expect("delivered");
    assert_eq!(letter.payload, "bad".as_bytes());
    assert_eq!(
        letter
            .headers
            .get("x-raftmq-dead-letter-reason")
            .map(String::as_str),
        Some("rejected")
    );
}
