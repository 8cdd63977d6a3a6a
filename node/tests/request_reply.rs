//! Request-reply and temporary topics against real nodes, with the
//! production defaults (`REPLY_LEASE` included): concurrent requests share
//! one reply topic and each gets its own reply; requesters that go away
//! leave no topic behind; nobody else consumes an exclusive topic.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use futures::future::join_all;
use raftmq_client::{Client, Code, Message, SubscribeOptions, SubscriptionMode, REPLY_LEASE};

/// Serves requests on `topic` until the test ends: each reply is `re:`
/// and the request's payload.
fn serve(client: Client, topic: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let options = SubscribeOptions {
            prefetch: 256,
            mode: Some(SubscriptionMode::Shared),
            ..SubscribeOptions::default()
        };
        let mut consumer = client
            .subscribe_with(topic, "servers", options)
            .await
            .expect("subscribe the server");
        while let Some(Ok(request)) = consumer.next().await {
            let answer = format!("re:{}", String::from_utf8_lossy(&request.payload));
            client
                .reply(&request, Message::new(answer))
                .await
                .expect("reply");
            consumer.ack([&request]).await.expect("ack the request");
        }
    })
}

/// Topics the server named, as `list_topics` counts them.
async fn temporary_topics(client: &Client) -> usize {
    let topics = client.list_topics().await.expect("list topics");
    topics.iter().filter(|t| t.name.starts_with("tmp.")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_their_own_replies_and_requesters_leave_no_topic_behind() {
    const CONCURRENT: usize = 1_000;
    const REQUESTERS: usize = 1_000;
    const AT_ONCE: usize = 50;
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("rpc", 2).await.expect("create topic");
    let server = serve(cluster.client(), "rpc");

    // A thousand requests at once over one client and one reply topic.
    let requester = client.requester().await.expect("a requester");
    let requests = (0..CONCURRENT).map(|i| {
        let requester = &requester;
        async move {
            let reply = requester
                .request(
                    "rpc",
                    Message::new(format!("q{i}")),
                    Duration::from_secs(60),
                )
                .await
                .expect("a reply");
            let correlation = reply
                .properties
                .as_deref()
                .and_then(|p| p.correlation_id.clone());
            (
                i,
                String::from_utf8_lossy(&reply.payload).into_owned(),
                correlation,
            )
        }
    });
    let replies = join_all(requests).await;
    let mut correlations = BTreeSet::new();
    for (i, payload, correlation) in replies {
        assert_eq!(
            payload,
            format!("re:q{i}"),
            "request {i} got another's reply"
        );
        correlations.insert(correlation.expect("the reply carries its correlation id"));
    }
    assert_eq!(correlations.len(), CONCURRENT);

    // The reply topic is this client's alone.
    let stranger = cluster.client();
    let refused = stranger
        .subscribe(requester.reply_to(), "peek", 1)
        .await
        .expect_err("another client's consumer");
    assert_eq!(refused.code(), Some(Code::FailedPrecondition), "{refused}");
    drop(requester);

    // A thousand requesters that connect, ask once and go away.
    for round in 0..REQUESTERS / AT_ONCE {
        let requesters = (0..AT_ONCE).map(|i| {
            let servers = cluster.servers();
            async move {
                let client = Client::connect(servers).expect("client");
                let requester = client.requester().await.expect("a requester");
                let n = round * AT_ONCE + i;
                let reply = requester
                    .request(
                        "rpc",
                        Message::new(format!("once{n}")),
                        Duration::from_secs(60),
                    )
                    .await
                    .expect("a reply");
                assert_eq!(reply.payload, format!("re:once{n}").into_bytes());
            }
        });
        join_all(requesters).await;
    }
    let left = temporary_topics(&client).await;
    assert!(left > 0, "the reply topics are gone before their lease");
    let deadline = Instant::now() + REPLY_LEASE + Duration::from_secs(30);
    loop {
        let left = temporary_topics(&client).await;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} temporary topics left {:?} after the last requester went",
            REPLY_LEASE + Duration::from_secs(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.abort();
}

/// An exclusive reply topic whose owner lives through a leader change
/// lives through it too: its consumer re-subscribes within the lease, so
/// requests before, across and well after the kill all get their replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_and_its_reply_topic_outlive_a_leader_kill() {
    let mut cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client.create_topic("rpc", 1).await.expect("create topic");
    let server = serve(cluster.client(), "rpc");
    let requester = client.requester().await.expect("a requester");
    let ask = |n: u32| {
        let requester = &requester;
        async move {
            let reply = requester
                .request(
                    "rpc",
                    Message::new(format!("k{n}")),
                    Duration::from_secs(60),
                )
                .await
                .expect("a reply");
            assert_eq!(reply.payload, format!("re:k{n}").into_bytes());
        }
    };
    ask(0).await;
    let leader = cluster.wait_for_leader(None).await;
    cluster.kill(leader);
    ask(1).await;
    cluster.wait_for_leader(Some(leader)).await;
    // Past the lease: had the topic been left unused through the election,
    // it would be gone by now.
    tokio::time::sleep(REPLY_LEASE + Duration::from_secs(2)).await;
    let topics = client.list_topics().await.expect("list topics");
    assert!(
        topics.iter().any(|t| t.name == requester.reply_to()),
        "the reply topic went with the old leader"
    );
    ask(2).await;
    server.abort();
}
