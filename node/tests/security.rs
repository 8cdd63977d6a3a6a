//! Nobody in who doesn't belong, on real `raftmq-node` processes with TLS
//! and client authentication on and the production defaults otherwise:
//! clients without credentials, with a wrong token or without the
//! permission are refused and change nothing; a plaintext client or one
//! with a certificate of another CA cannot talk to a node; a foreign node
//! at a member's address cannot vote, append or lead.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{value, Cluster, Security, CLUSTER_ID};
use raftmq_client::{
    Client, ClientError, ClientOptions, Code, ExchangeKind, ExchangeOptions, Message,
    SubscribeOptions, TlsOptions,
};
use raftmq_node::certs::{Authority, Subject};

const APP: &str = "publish = [\"orders*\"]\nconsume = [\"orders*\"]";

/// Asserts that `result` failed with `code`.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, code: Code, what: &str) {
    match result {
        Err(error) => assert_eq!(error.code(), Some(code), "{what}: {error}"),
        Ok(value) => panic!("{what}: expected {code:?}, got {value:?}"),
    }
}

/// The call never reached a service: the connection itself failed (the
/// client then tries every node until its deadline).
fn assert_handshake_failed(error: &ClientError) {
    assert!(
        matches!(error, ClientError::NoLeader { .. })
            && error.to_string().contains("transport error"),
        "expected a failed connection, got {error}"
    );
}

/// A client that gives up soon: refusals are final, and a client that
/// cannot connect at all should not wait out the default 30 s.
fn quick(cluster: &Cluster, options: ClientOptions) -> Client {
    let options = ClientOptions {
        retry_deadline: Duration::from_secs(3),
        ..options
    };
    Client::connect_with(cluster.servers(), options).expect("client")
}

/// What a refused call must not have changed: every topic with its
/// retained messages and subscriptions, and every exchange.
async fn contents(admin: &Client) -> (Vec<(String, u64, Vec<String>)>, Vec<String>) {
    let topics = admin
        .list_topics()
        .await
        .expect("list topics")
        .into_iter()
        .map(|t| (t.name, t.retained, t.subscriptions))
        .collect();
    let exchanges = admin
        .list_exchanges()
        .await
        .expect("list exchanges")
        .into_iter()
        .map(|e| e.name)
        .collect();
    (topics, exchanges)
}

/// A series summed over the pages of `nodes`.
async fn total(cluster: &Cluster, nodes: &[u64], series: &str) -> f64 {
    let mut sum = 0.0;
    for id in nodes {
        sum += value(&cluster.scrape(*id).await, series);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_credentials_or_permission_are_refused_and_change_nothing() {
    let cluster =
        Cluster::start_secure(3, &[("app", APP), ("viewer", "consume = [\"orders\"]")]).await;
    let security = cluster.security();
    let admin = cluster.client();
    admin
        .create_topic("orders", 2)
        .await
        .expect("admin declares");
    admin
        .create_topic("payments", 1)
        .await
        .expect("admin declares");
    admin
        .publish("payments", vec![Message::new("p1")])
        .await
        .expect("admin publishes");
    let before = contents(&admin).await;

    // No credentials, a wrong secret, an unknown user: UNAUTHENTICATED for
    // every kind of call.
    for (who, token) in [
        ("no token", None),
        ("a wrong secret", Some("app:wrong")),
        ("an unknown user", Some("nobody:nobody-secret")),
    ] {
        let client = quick(&cluster, cluster.client_options(token));
        let code = Code::Unauthenticated;
        refused(
            client.publish("orders", vec![Message::new("x")]).await,
            code,
            who,
        );
        refused(client.create_topic("sneaky", 1).await, code, who);
        refused(
            client.delete_topic("payments", Default::default()).await,
            code,
            who,
        );
        refused(client.list_topics().await, code, who);
        refused(
            client.subscribe("payments", "steal", 10).await.map(drop),
            code,
            who,
        );
        refused(client.transfer_leader(None).await, code, who);
        refused(client.cluster_status(cluster.addr(1)).await, code, who);
    }

    // A user may do what its permissions say, and nothing else.
    let app = quick(
        &cluster,
        cluster.client_options(Some(&Security::token("app"))),
    );
    let denied = Code::PermissionDenied;
    refused(
        app.publish("payments", vec![Message::new("x")]).await,
        denied,
        "publish",
    );
    refused(app.create_topic("orders.eu", 1).await, denied, "declare");
    refused(
        app.delete_topic("orders", Default::default()).await,
        denied,
        "delete",
    );
    refused(
        app.subscribe("payments", "steal", 10).await.map(drop),
        denied,
        "consume",
    );
    let dead_letters_elsewhere = SubscribeOptions {
        prefetch: 10,
        dead_letter_topic: Some("payments".to_string()),
        max_deliveries: 1,
        ..Default::default()
    };
    refused(
        app.subscribe_with("orders", "dlq", dead_letters_elsewhere)
            .await
            .map(drop),
        denied,
        "dead letters into a topic it may not publish to",
    );
    refused(
        app.declare_exchange("orders.x", ExchangeKind::Fanout, ExchangeOptions::default())
            .await,
        denied,
        "declare an exchange",
    );
    refused(
        app.transfer_leader(None).await,
        denied,
        "transfer leadership",
    );
    refused(app.take_snapshot(cluster.addr(1)).await, denied, "snapshot");
    let producer = app.producer("payments");
    let confirm = producer
        .send(Message::new("streamed"))
        .await
        .expect("queued");
    refused(confirm.await, denied, "publish on a stream");
    let listed: Vec<String> = app
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, ["orders"], "a user lists only what it may use");
    let viewer = quick(
        &cluster,
        cluster.client_options(Some(&Security::token("viewer"))),
    );
    refused(
        viewer.publish("orders", vec![Message::new("x")]).await,
        denied,
        "viewer publishes",
    );

    assert_eq!(
        contents(&admin).await,
        before,
        "a refused call changed the cluster"
    );

    // What it may do, it does.
    app.publish("orders", vec![Message::new("o1")])
        .await
        .expect("app publishes");
    let mut consumer = app
        .subscribe("orders", "billing", 10)
        .await
        .expect("app consumes");
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(&delivery.payload[..], b"o1");
    consumer.ack([&delivery]).await.expect("ack");

    // A client certificate names its user, instead of a token.
    let (cert, key) = security.issue(CLUSTER_ID, &Subject::user("app"), "user-app");
    let with_cert = |cert: &std::path::Path, key: &std::path::Path| {
        let mut options = cluster.client_options(None);
        let tls = options.tls.as_mut().expect("tls");
        tls.identity = Some((
            std::fs::read(cert).expect("cert"),
            std::fs::read(key).expect("key"),
        ));
        quick(&cluster, options)
    };
    let by_cert = with_cert(&cert, &key);
    by_cert
        .publish("orders", vec![Message::new("o2")])
        .await
        .expect("the certificate's user publishes");
    refused(
        by_cert.publish("payments", vec![Message::new("x")]).await,
        denied,
        "by certificate",
    );

    // A certificate of another CA does not get through the handshake, and
    // neither does a client that does not speak TLS.
    let stranger_ca = Authority::new(CLUSTER_ID).expect("ca");
    let stranger = stranger_ca.issue(&Subject::user("app")).expect("issue");
    let stranger_dir = tempfile::TempDir::new().expect("dir");
    let (stranger_cert, stranger_key) = (
        stranger_dir.path().join("c.pem"),
        stranger_dir.path().join("k.pem"),
    );
    std::fs::write(&stranger_cert, stranger.cert).expect("write");
    std::fs::write(&stranger_key, stranger.key).expect("write");
    let error = with_cert(&stranger_cert, &stranger_key)
        .publish("orders", vec![Message::new("x")])
        .await
        .expect_err("another CA's certificate is refused");
    assert_handshake_failed(&error);
    let plaintext = ClientOptions {
        token: cluster
            .client_options(Some(&Security::token("admin")))
            .token,
        ..Default::default()
    };
    let error = quick(&cluster, plaintext)
        .list_topics()
        .await
        .expect_err("a plaintext client gets no answer");
    assert_handshake_failed(&error);
    let unknown_ca = ClientOptions {
        tls: Some(TlsOptions {
            ca_pem: stranger_ca.cert_pem().as_bytes().to_vec(),
            identity: None,
            domain: None,
        }),
        ..cluster.client_options(Some(&Security::token("admin")))
    };
    let error = quick(&cluster, unknown_ca)
        .list_topics()
        .await
        .expect_err("a client that does not trust the nodes' CA does not talk to them");
    assert_handshake_failed(&error);

    // o1 published and acked, o2 published: one retained, and billing.
    let mut after = before.clone();
    let orders = after
        .0
        .iter_mut()
        .find(|t| t.0 == "orders")
        .expect("orders");
    orders.1 = 1;
    orders.2 = vec!["billing".to_string()];
    assert_eq!(
        contents(&admin).await,
        after,
        "only the allowed calls changed the cluster"
    );

    // The users file is read again on SIGHUP: app may now publish to payments.
    security.write_users(&[(
        "app",
        "publish = [\"orders*\", \"payments\"]\nconsume = [\"orders*\"]",
    )]);
    for id in 1..=3 {
        cluster.signal(id, "HUP");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match app.publish("payments", vec![Message::new("granted")]).await {
            Ok(_) => break,
            Err(e) if e.code() == Some(Code::PermissionDenied) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish after the reload: {e}"),
        }
    }
    // The viewer, dropped from the file, is out.
    refused(
        viewer.list_topics().await,
        Code::Unauthenticated,
        "a removed user",
    );

    // Every refusal is counted.
    assert!(
        total(
            &cluster,
            &[1, 2, 3],
            "raftmq_unauthenticated_total{reason=\"missing\"}"
        )
        .await
            >= 7.0
    );
    assert!(
        total(
            &cluster,
            &[1, 2, 3],
            "raftmq_unauthenticated_total{reason=\"wrong_token\"}"
        )
        .await
            >= 14.0
    );
    assert!(total(&cluster, &[1, 2, 3], "raftmq_permission_denied_total").await >= 10.0);
}

/// Raft RPCs `nodes` refused for `reason`.
async fn refusals(cluster: &Cluster, nodes: &[u64], reason: &str) -> f64 {
    let series = format!("raftmq_peer_refusals_total{{reason=\"{reason}\"}}");
    total(cluster, nodes, &series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_node_at_a_members_address_cannot_vote_append_or_lead() {
    let mut cluster = Cluster::start_secure(3, &[]).await;
    let admin = cluster.client();
    admin.create_topic("steady", 1).await.expect("declare");
    let leader = cluster.wait_for_leader(None).await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let others: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    let term = cluster.status(leader).await.expect("status").term;

    // Traffic the whole time: the cluster keeps serving.
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (admin, stop, confirmed) = (admin.clone(), stop.clone(), confirmed.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && sent < 100_000 {
                sent += 1;
                admin
                    .publish("steady", vec![Message::new(format!("m{sent}"))])
                    .await
                    .expect("publish while a foreign node knocks");
                confirmed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let security = cluster.security();
    let stranger_ca = Authority::new(CLUSTER_ID).expect("ca");
    let hosts = ["127.0.0.1", "localhost"];
    let impostors = {
        let dir = security.dir.join("impostors");
        std::fs::create_dir_all(&dir).expect("dir");
        let own = stranger_ca
            .issue(&Subject::node(victim, &hosts))
            .expect("issue");
        let (cert, key) = (dir.join("stranger.pem"), dir.join("stranger.key"));
        std::fs::write(&cert, own.cert).expect("write");
        std::fs::write(&key, own.key).expect("write");
        let mut stranger = security.node_args(CLUSTER_ID, &cert, &key);
        // It trusts its own CA, so its side of the handshake would pass.
        let ca = dir.join("stranger-ca.pem");
        std::fs::write(&ca, stranger_ca.cert_pem()).expect("write");
        let at = stranger
            .iter()
            .position(|a| a == "--tls-ca")
            .expect("ca arg");
        stranger[at + 1] = ca.display().to_string();
        let (cert, key) = security.issue("other", &Subject::node(victim, &hosts), "other-cluster");
        let other_cluster = security.node_args("other", &cert, &key);
        [
            ("a certificate of another CA", stranger, None),
            ("another cluster's id", other_cluster, Some("cluster_id")),
        ]
    };

    for (what, args, counted) in impostors {
        let refused_before = refusals(&cluster, &others, "cluster_id").await;
        cluster.kill(victim);
        let data = cluster.data_dir(victim);
        let kept = data.with_extension("kept");
        std::fs::rename(&data, &kept).expect("keep the member's data");
        cluster.set_node_args(victim, args);
        cluster.spawn(victim);
        // Several of its election timeouts (400-800 ms): it stands again
        // and again.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let page = cluster.scrape(victim).await;
        assert!(
            value(&page, "raftmq_raft_term") >= 1.0,
            "{what}: the impostor never stood"
        );
        assert_eq!(
            value(&page, "raftmq_raft_is_leader"),
            0.0,
            "{what}: the impostor leads"
        );
        // Its log holds only the membership it started itself with: the
        // leader's entries never reached it.
        assert_eq!(
            value(&page, "raftmq_raft_last_log_index"),
            0.0,
            "{what}: the impostor was sent the cluster's log"
        );
        for id in &others {
            let status = cluster.status(*id).await.expect("status");
            assert_eq!(status.term, term, "{what}: node {id}'s term moved");
            assert_eq!(
                status.leader_id,
                Some(leader),
                "{what}: node {id}'s leader moved"
            );
        }
        if let Some(reason) = counted {
            assert!(
                refusals(&cluster, &others, reason).await > refused_before,
                "{what}: no refusal counted"
            );
        }
        cluster.kill(victim);
        cluster.clear_node_args(victim);
        std::fs::remove_dir_all(&data).expect("impostor's data");
        std::fs::rename(&kept, &data).expect("the member's data back");
    }

    // The member comes back and catches up; the traffic never failed.
    cluster.spawn(victim);
    cluster.wait_all_serving(Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic task");
    assert!(
        confirmed.load(Ordering::Relaxed) >= 50,
        "too little traffic to show anything"
    );
}

/// `raftmq-node certs` and `raftmq-node token` make what a node loads.
#[test]
fn the_certs_and_token_commands_make_files_a_node_loads() {
    let dir = tempfile::TempDir::new().expect("dir");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_raftmq-node"))
            .args(args)
            .output()
            .expect("run raftmq-node");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (
            output.status.success(),
            text + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let out = dir.path().display().to_string();
    let (ok, text) = run(&[
        "certs",
        "--out",
        &out,
        "--cluster-id",
        "prod",
        "--node",
        "1=127.0.0.1+node1",
        "--node",
        "2=node2",
        "--user",
        "app",
    ]);
    assert!(ok, "{text}");
    for file in [
        "ca.pem",
        "node-1.pem",
        "node-1.key",
        "node-2.pem",
        "user-app.pem",
        "user-app.key",
    ] {
        assert!(text.contains(file), "{file} not reported: {text}");
    }
    let files = |name: &str| raftmq_node::tls::TlsFiles {
        cert: dir.path().join(format!("{name}.pem")),
        key: dir.path().join(format!("{name}.key")),
        ca: dir.path().join("ca.pem"),
    };
    raftmq_node::tls::Tls::load(&files("node-1")).expect("a node loads its certificate");
    raftmq_node::tls::Tls::load(&files("user-app")).expect("the user's loads too");
    let (ok, text) = run(&["certs", "--out", &out, "--node", "1="]);
    assert!(!ok && text.contains("empty host"), "{text}");

    let (ok, text) = run(&["token", "app", "--json"]);
    assert!(ok, "{text}");
    let made: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    let token = made["token"].as_str().expect("token");
    let secret = made["secret"].as_str().expect("secret");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!("[[user]]\nname = \"app\"\nsecret = \"{secret}\"\n"),
    )
    .expect("write");
    let access = raftmq_node::access::Access::open(&users).expect("the entry loads");
    assert_eq!(access.verify(token).expect("the token passes").name, "app");
    let (ok, text) = run(&["token", "a:b"]);
    assert!(!ok && text.contains("no ':'"), "{text}");
}

/// The production default of a user's consumer share (`EdgeLimits::user`),
/// four connections' worth.
const CONSUMERS_PER_USER: usize = 1_024;
const CONSUMERS_PER_CONNECTION: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_consumers_over_all_its_connections_stop_at_its_share() {
    let cluster = Cluster::start_secure(3, &[("app", APP)]).await;
    cluster
        .client()
        .create_topic("orders", 1)
        .await
        .expect("topic");
    let app = || {
        quick(
            &cluster,
            cluster.client_options(Some(&Security::token("app"))),
        )
    };
    // Each client is one connection to the leader, filled to its share.
    let connections: Vec<Client> = (0..CONSUMERS_PER_USER / CONSUMERS_PER_CONNECTION)
        .map(|_| app())
        .collect();
    let fill = connections
        .iter()
        .enumerate()
        .map(|(c, client)| async move {
            let mut consumers = Vec::new();
            for n in 0..CONSUMERS_PER_CONNECTION {
                let consumer = client
                    .subscribe("orders", &format!("s{c}"), 1)
                    .await
                    .unwrap_or_else(|e| panic!("connection {c}, consumer {n}: {e}"));
                consumers.push(consumer);
            }
            consumers
        });
    let mut consumers = futures::future::join_all(fill).await;
    let fifth = app();
    let refused = fifth.subscribe("orders", "s0", 1).await;
    refused_with(&refused, "this user has 1024 consumers");
    assert_eq!(
        total(
            &cluster,
            &[1, 2, 3],
            "raftmq_share_refusals_total{share=\"user\"}"
        )
        .await,
        1.0
    );
    // One closed anywhere makes room for the next.
    drop(consumers[0].pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fifth.subscribe("orders", "s0", 1).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no room after a consumer closed: {e}"),
        }
    }
}

fn refused_with<T: std::fmt::Debug>(result: &Result<T, ClientError>, message: &str) {
    match result {
        Err(error) => {
            assert_eq!(error.code(), Some(Code::ResourceExhausted), "{error}");
            assert!(error.to_string().contains(message), "{error}");
        }
        Ok(value) => panic!("expected RESOURCE_EXHAUSTED, got {value:?}"),
    }
}
