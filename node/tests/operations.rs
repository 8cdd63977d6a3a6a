//! Operating a cluster under traffic, on real `raftmq-node` processes with
//! the production defaults: growing it by a node that joins and shrinking it
//! by removing the leader, a rolling restart by SIGTERM, and handing
//! leadership over on request.

mod common;

use std::time::{Duration, Instant};

use common::traffic::Traffic;
use common::{cluster_with_topic, Cluster};
use raftmq_client::Code;

/// A rolling restart must not show an election timeout (800 ms and more)
/// to producers: the longest gap between two confirms stays below this.
const HAND_OFF_GAP_MAX: Duration = Duration::from_millis(500);

/// Waits (up to `within`) until node `id`'s view has `voters` voters.
async fn wait_for_voters(cluster: &Cluster, id: u64, voters: &[u64], within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = cluster.status(id).await;
        let seen: Vec<u64> = last
            .iter()
            .flat_map(|s| s.members.iter().filter(|m| m.voter).map(|m| m.node_id))
            .collect();
        if seen == voters {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "node {id} did not see voters {voters:?} within {within:?}: {last:#?}; logs in {}",
        cluster.dir().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grows_to_four_nodes_and_shrinks_back_to_three_removing_the_leader_under_traffic()
{
    let (mut cluster, client) = cluster_with_topic("orders", 2).await;
    let traffic = Traffic::start(&client, "orders", 200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Node 4 starts empty and joins through node 1: a learner, then a voter.
    cluster.spawn_joining(4, 1);
    let leader = cluster.wait_for_leader(None).await;
    wait_for_voters(&cluster, leader, &[1, 2, 3, 4], Duration::from_secs(60)).await;
    cluster.wait_all_serving(Duration::from_secs(60)).await;
    eprintln!("node 4 joined; node {leader} leads");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Removing the leader hands leadership over first.
    let leader = cluster.wait_for_leader(None).await;
    let started = Instant::now();
    let members = client.remove_node(leader).await.expect("remove the leader");
    eprintln!("removed node {leader} in {:?}", started.elapsed());
    let mut voters: Vec<u64> = (1..=4).filter(|id| *id != leader).collect();
    voters.sort();
    let answered: Vec<u64> = members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    assert_eq!(answered, voters, "members after removing node {leader}");
    assert!(members.iter().all(|m| m.node_id != leader));
    cluster.forget(leader);
    let next = cluster.wait_for_leader(None).await;
    assert_ne!(next, leader);
    wait_for_voters(&cluster, next, &voters, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    cluster.wait_all_serving(Duration::from_secs(60)).await;
    traffic
        .finish(Duration::from_secs(60))
        .await
        .report("grown to 4 nodes, then the leader removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_by_sigterm_hands_leadership_over_without_an_election_timeout() {
    let (mut cluster, client) = cluster_with_topic("orders", 2).await;
    let traffic = Traffic::start(&client, "orders", 200).await;
    // Past the first leader's lease: a younger leader first waits it out
    // (writes go on meanwhile; only the hand-off is later).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut leaders_stopped = 0;
    for node in 1..=3 {
        let was_leader = cluster.wait_for_leader(None).await == node;
        let exit = cluster.terminate(node, Duration::from_secs(10));
        assert!(
            exit.is_some_and(|status| status.success()),
            "node {node} after SIGTERM: {exit:?}; its log:\n{}",
            cluster.log(node)
        );
        if was_leader {
            leaders_stopped += 1;
            assert!(
                cluster
                    .log(node)
                    .contains("handed leadership over before stopping"),
                "leader {node} stopped without a hand-off; its log:\n{}",
                cluster.log(node)
            );
        }
        cluster.spawn(node);
        cluster.wait_all_serving(Duration::from_secs(30)).await;
        // Let the new leader's lease run before the next stop.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(leaders_stopped >= 1, "no stop hit the leader");

    let published = traffic.finish(Duration::from_secs(60)).await;
    published.report("a rolling restart of three nodes");
    assert_eq!(published.failed, 0, "outcomes unknown during the restart");
    assert!(
        published.longest_gap < HAND_OFF_GAP_MAX,
        "longest confirm gap {:?}: an election timeout showed",
        published.longest_gap
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leader_moves_leadership_to_the_voter_named_and_refuses_a_stranger() {
    let (cluster, client) = cluster_with_topic("orders", 2).await;
    let leader = cluster.wait_for_leader(None).await;
    let target = (1..=3).find(|id| *id != leader).expect("a follower");
    let moved = client
        .transfer_leader(Some(target))
        .await
        .expect("transfer");
    assert_eq!(moved.leader_id, target);
    eprintln!(
        "node {leader} handed leadership to {target} in {} ms",
        moved.took_ms
    );
    assert_eq!(cluster.wait_for_leader(Some(leader)).await, target);

    // No target named: the most caught-up other voter.
    let moved = client.transfer_leader(None).await.expect("transfer");
    assert_ne!(moved.leader_id, target);

    // Logs written to a file carry no colour codes.
    for id in 1..=3 {
        assert!(
            !cluster.log(id).contains('\x1b'),
            "ANSI codes in node {id}'s log"
        );
    }

    let refused = client.transfer_leader(Some(9)).await.expect_err("node 9");
    assert_eq!(refused.code(), Some(Code::InvalidArgument), "{refused}");
    assert!(refused.to_string().contains("not a voter"), "{refused}");
    let refused = client.remove_node(9).await.expect_err("node 9");
    assert_eq!(refused.code(), Some(Code::NotFound), "{refused}");
    let refused = client
        .add_node(2, "127.0.0.1:1", None)
        .await
        .expect_err("node 2 elsewhere");
    assert_eq!(refused.code(), Some(Code::AlreadyExists), "{refused}");
}

/// Peers reach each other at `127.0.0.1:PORT` while clients are told
/// `localhost:PORT` (`--advertise`): a follower's status and its redirect
/// name the advertised address, a client given one follower follows it,
/// and a node that joins records the client address it advertises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_name_the_advertised_client_address_so_one_follower_seed_is_enough() {
    use raftmq_proto::v1::{broker_client::BrokerClient, CreateTopicRequest};

    let mut cluster = Cluster::start_advertising(3).await;
    let leader = cluster.wait_for_leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let status = cluster.status(follower).await.expect("follower status");
    assert_eq!(status.members.len(), 3);
    for member in &status.members {
        assert_eq!(member.address, cluster.client_addr(member.node_id));
        assert_eq!(member.peer_address, cluster.addr(member.node_id));
        assert_ne!(member.address, member.peer_address);
    }

    let mut raw = BrokerClient::connect(format!("http://{}", cluster.addr(follower)))
        .await
        .expect("connect to the follower");
    let refused = raw
        .create_topic(CreateTopicRequest {
            name: "orders".into(),
            partitions: 1,
            ..Default::default()
        })
        .await
        .expect_err("a follower does not write");
    let named = refused
        .metadata()
        .get("x-raftmq-leader")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    assert_eq!(named, Some(cluster.client_addr(leader)), "{refused:?}");

    let one_seed =
        raftmq_client::Client::connect(vec![cluster.addr(follower).to_string()]).expect("client");
    one_seed
        .create_topic("orders", 1)
        .await
        .expect("create through a follower seed");
    let confirmed = one_seed
        .publish("orders", vec![raftmq_client::Message::new("one seed")])
        .await
        .expect("publish through a follower seed");
    assert_eq!(confirmed.len(), 1);

    cluster.spawn_joining(4, follower);
    let leader = cluster.wait_for_leader(None).await;
    wait_for_voters(&cluster, leader, &[1, 2, 3, 4], Duration::from_secs(60)).await;
    let status = cluster.status(leader).await.expect("leader status");
    let joined = status
        .members
        .iter()
        .find(|m| m.node_id == 4)
        .expect("node 4 is a member");
    assert_eq!(joined.address, cluster.client_addr(4));
    assert_eq!(joined.peer_address, cluster.addr(4));
}

/// What the Kubernetes manifest runs (deploy/k8s): `health --ready` passes
/// on caught-up voters, and the preStop hook `hand-off` moves leadership
/// off the leader and leaves a follower alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_probes_report_ready_voters_and_the_pre_stop_hook_hands_off() {
    let cluster = Cluster::start(3, &[]).await;
    for id in 1..=3 {
        let (ready, said) = cluster.health(id, &["--ready"]);
        assert!(ready, "node {id} not ready: {said}");
    }
    let leader = cluster.wait_for_leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let (ok, said) = cluster.hand_off(follower);
    assert!(ok && said.contains("nothing to hand off"), "{said}");
    assert_eq!(cluster.wait_for_leader(None).await, leader);

    let (ok, said) = cluster.hand_off(leader);
    assert!(ok && said.contains("handed leadership to node"), "{said}");
    assert_ne!(cluster.wait_for_leader(Some(leader)).await, leader);
}
