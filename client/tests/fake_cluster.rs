//! The client against an in-process fake cluster: one follower that
//! redirects every write, one leader that can be told to break its streams.
//! Real nodes are exercised by the node crate's integration tests; this
//! checks the client's own promises (redirects, re-sent requests keep their
//! order, consumers re-subscribe) without them.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use raftmq_client::{Client, ClientOptions, Message, ProducerOptions};
use raftmq_proto::v1 as proto;
use raftmq_proto::v1::broker_server::{Broker, BrokerServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// No test may hang: the client's own deadlines are far shorter.
const TEST_DEADLINE: Duration = Duration::from_secs(60);

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The leader's state, shared by its handlers.
#[derive(Default)]
struct Log {
    /// Stored payloads; a payload's index is its offset in partition 0.
    stored: Vec<Bytes>,
    acked: BTreeSet<u64>,
    /// Break the next PublishStream right after storing this many requests
    /// from it, without answering the last one: an outcome the client
    /// cannot know.
    break_publish_after: Option<usize>,
    /// End the next Subscribe streams cleanly after these many deliveries,
    /// one stream each, as a leader change would.
    end_subscribes_after: VecDeque<usize>,
    consumer_id_next: u64,
}

#[derive(Clone)]
enum Fake {
    Leader(Arc<Mutex<Log>>),
    Follower { leader: String },
}

impl Fake {
    fn leader(&self) -> Result<&Arc<Mutex<Log>>, Status> {
        match self {
            Fake::Leader(log) => Ok(log),
            Fake::Follower { leader } => {
                let mut status = Status::failed_precondition("not the leader");
                let value = leader
                    .parse()
                    .map_err(|_| Status::internal("bad leader address"))?;
                status
                    .metadata_mut()
                    .insert(raftmq_proto::LEADER_METADATA_KEY, value);
                Err(status)
            }
        }
    }
}

fn store(log: &Mutex<Log>, request: &proto::PublishRequest) -> Vec<proto::Position> {
    let mut log = log.lock().expect("log lock");
    request
        .messages
        .iter()
        .map(|message| {
            log.stored.push(message.payload.clone());
            proto::Position {
                partition: 0,
                offset: log.stored.len() as u64 - 1,
            }
        })
        .collect()
}

#[tonic::async_trait]
impl Broker for Fake {
    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::CreateTopicResponse>, Status> {
        self.leader()?;
        Ok(Response::new(proto::CreateTopicResponse {
            created: true,
            name: request.into_inner().name,
        }))
    }

    async fn delete_topic(
        &self,
        _: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        Err(Status::unimplemented("the fake has one topic for good"))
    }

    async fn delete_subscription(
        &self,
        _: Request<proto::DeleteSubscriptionRequest>,
    ) -> Result<Response<proto::DeleteSubscriptionResponse>, Status> {
        Err(Status::unimplemented(
            "the fake has one subscription for good",
        ))
    }

    async fn list_topics(
        &self,
        _: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        Ok(Response::new(proto::ListTopicsResponse { topics: vec![] }))
    }

    async fn declare_exchange(
        &self,
        _: Request<proto::DeclareExchangeRequest>,
    ) -> Result<Response<proto::DeclareExchangeResponse>, Status> {
        Err(Status::unimplemented("the fake has no exchanges"))
    }

    async fn delete_exchange(
        &self,
        _: Request<proto::DeleteExchangeRequest>,
    ) -> Result<Response<proto::DeleteExchangeResponse>, Status> {
        Err(Status::unimplemented("the fake has no exchanges"))
    }

    async fn list_exchanges(
        &self,
        _: Request<proto::ListExchangesRequest>,
    ) -> Result<Response<proto::ListExchangesResponse>, Status> {
        Err(Status::unimplemented("the fake has no exchanges"))
    }

    async fn bind(
        &self,
        _: Request<proto::BindRequest>,
    ) -> Result<Response<proto::BindResponse>, Status> {
        Err(Status::unimplemented("the fake has no exchanges"))
    }

    async fn unbind(
        &self,
        _: Request<proto::BindRequest>,
    ) -> Result<Response<proto::BindResponse>, Status> {
        Err(Status::unimplemented("the fake has no exchanges"))
    }

    async fn publish_to_exchange(
        &self,
        _: Request<proto::PublishToExchangeRequest>,
    ) -> Result<Response<proto::PublishToExchangeResponse>, Status> {
        Err(Status::unimplemented("the fake has no exchanges"))
    }

    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let log = self.leader()?;
        let request = request.into_inner();
        Ok(Response::new(proto::PublishResponse {
            request_id: request.request_id,
            positions: store(log, &request),
            error: None,
        }))
    }

    type PublishStreamStream = Responses<proto::PublishResponse>;

    async fn publish_stream(
        &self,
        request: Request<Streaming<proto::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let log = self.leader()?.clone();
        let break_after = log.lock().expect("log lock").break_publish_after.take();
        let mut inbound = request.into_inner();
        let (outbound, responses) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut received = 0;
            while let Ok(Some(request)) = inbound.message().await {
                received += 1;
                let positions = store(&log, &request);
                if Some(received) == break_after {
                    let _ = outbound
                        .send(Err(Status::unavailable("leadership lost")))
                        .await;
                    return;
                }
                let response = proto::PublishResponse {
                    request_id: request.request_id,
                    positions,
                    error: None,
                };
                if outbound.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    type SubscribeStream = Responses<proto::Delivery>;

    async fn subscribe(
        &self,
        _: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut log = self.leader()?.lock().expect("log lock");
        log.consumer_id_next += 1;
        let consumer_id = log.consumer_id_next;
        let end_after = log.end_subscribes_after.pop_front().unwrap_or(usize::MAX);
        let deliveries: Vec<Result<proto::Delivery, Status>> = log
            .stored
            .iter()
            .enumerate()
            .filter(|(offset, _)| !log.acked.contains(&(*offset as u64)))
            .take(end_after)
            .enumerate()
            .map(|(index, (offset, payload))| {
                Ok(proto::Delivery {
                    consumer_id,
                    sequence: index as u64 + 1,
                    partition: 0,
                    offset: offset as u64,
                    payload: payload.clone(),
                    attempts: if consumer_id > 1 { 2 } else { 1 },
                    redelivered: consumer_id > 1,
                    ..Default::default()
                })
            })
            .collect();
        let ended = end_after != usize::MAX;
        let stream = futures::stream::iter(deliveries);
        if ended {
            Ok(Response::new(Box::pin(stream)))
        } else {
            // A healthy stream stays open after the backlog.
            Ok(Response::new(Box::pin(
                stream.chain(futures::stream::pending()),
            )))
        }
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let mut log = self.leader()?.lock().expect("log lock");
        for position in request.into_inner().positions {
            log.acked.insert(position.offset);
        }
        Ok(Response::new(proto::AckResponse { applied_at: 1 }))
    }

    async fn nack(
        &self,
        _: Request<proto::NackRequest>,
    ) -> Result<Response<proto::NackResponse>, Status> {
        self.leader()?;
        Ok(Response::new(proto::NackResponse {}))
    }

    async fn take_snapshot(
        &self,
        _: Request<proto::TakeSnapshotRequest>,
    ) -> Result<Response<proto::TakeSnapshotResponse>, Status> {
        Err(Status::unimplemented("the fake keeps no log"))
    }

    async fn transfer_leader(
        &self,
        _: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderResponse>, Status> {
        Err(Status::unimplemented("the fake has no membership"))
    }

    async fn add_node(
        &self,
        _: Request<proto::AddNodeRequest>,
    ) -> Result<Response<proto::AddNodeResponse>, Status> {
        Err(Status::unimplemented("the fake has no membership"))
    }

    async fn topic_stats(
        &self,
        _: Request<proto::TopicStatsRequest>,
    ) -> Result<Response<proto::TopicStatsResponse>, Status> {
        Err(Status::unimplemented("the fake keeps no stats"))
    }

    async fn remove_node(
        &self,
        _: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::RemoveNodeResponse>, Status> {
        Err(Status::unimplemented("the fake has no membership"))
    }

    async fn cluster_status(
        &self,
        _: Request<proto::ClusterStatusRequest>,
    ) -> Result<Response<proto::ClusterStatusResponse>, Status> {
        let (node_id, role) = match self {
            Fake::Leader(_) => (1, "leader"),
            Fake::Follower { .. } => (2, "follower"),
        };
        Ok(Response::new(proto::ClusterStatusResponse {
            node_id,
            leader_id: Some(1),
            term: 3,
            role: role.to_string(),
            ..Default::default()
        }))
    }
}

async fn serve(fake: Fake) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BrokerServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Ok(address)
}

/// An address nothing listens on.
async fn dead_address() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.to_string())
}

/// A dead seed, then a follower, then the leader: every write must travel.
async fn cluster() -> anyhow::Result<(Client, Arc<Mutex<Log>>, String)> {
    let log = Arc::new(Mutex::new(Log::default()));
    let leader = serve(Fake::Leader(log.clone())).await?;
    let follower = serve(Fake::Follower {
        leader: leader.clone(),
    })
    .await?;
    let client = Client::connect(vec![dead_address().await?, follower, leader.clone()])?;
    Ok((client, log, leader))
}

#[tokio::test]
async fn writes_find_the_leader_past_dead_nodes_and_followers() -> anyhow::Result<()> {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (client, log, leader) = cluster().await?;

        // Phase 1: the first write starts at a seed and must end at the leader.
        client.create_topic("t", 1).await?;
        assert_eq!(client.leader(), Some(leader));

        // Phase 2: a unary publish confirms each message with its position.
        let positions = client
            .publish("t", vec![Message::new("a"), Message::new("b")])
            .await?;
        assert_eq!(positions.len(), 2);
        assert_eq!(log.lock().expect("log lock").stored.len(), 2);

        // Phase 3: status reaches every seed and reports the dead one.
        let nodes = client.cluster_status_all().await;
        let answered: Vec<bool> = nodes.iter().map(|node| node.status.is_ok()).collect();
        assert_eq!(answered, [false, true, true]);
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_broken_publish_stream_is_resumed_in_order() -> anyhow::Result<()> {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (client, log, _) = cluster().await?;
        log.lock().expect("log lock").break_publish_after = Some(3);

        // Phase 1: many small requests, so that several are in flight when
        // the leader breaks the stream after storing its third.
        let options = ProducerOptions {
            window: 8,
            batch_max: 5,
            ..Default::default()
        };
        let producer = client.producer_with("t", options)?;
        let mut confirms = Vec::new();
        for number in 0..200 {
            confirms.push(producer.send(Message::new(number.to_string())).await?);
        }
        producer.flush().await?;

        // Phase 2: every message is confirmed despite the break.
        for confirm in confirms {
            confirm.await?;
        }
        producer.close().await?;

        // Phase 3: the log holds every message, first occurrences in send
        // order; the unanswered request may be stored twice.
        let stored = log.lock().expect("log lock").stored.clone();
        let mut seen = BTreeSet::new();
        let firsts: Vec<String> = stored
            .iter()
            .map(|payload| String::from_utf8_lossy(payload).to_string())
            .filter(|payload| seen.insert(payload.clone()))
            .collect();
        let sent: Vec<String> = (0..200).map(|number: i32| number.to_string()).collect();
        assert_eq!(firsts, sent);
        assert!(stored.len() > 200, "the unanswered request was re-sent");
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_consumer_resubscribes_when_its_stream_ends() -> anyhow::Result<()> {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (client, log, _) = cluster().await?;
        let payloads: Vec<Message> = (0..20).map(|n| Message::new(n.to_string())).collect();
        client.publish("t", payloads).await?;
        log.lock().expect("log lock").end_subscribes_after = [5].into();

        // Phase 1: the first stream ends after five deliveries, unacked.
        let mut consumer = client.subscribe("t", "s", 100).await?;
        let mut offsets = BTreeSet::new();
        let mut redelivered = 0;
        for _ in 0..40 {
            if offsets.len() == 20 {
                break;
            }
            let delivery = consumer.next().await.expect("consumer finished")?;
            redelivered += u32::from(delivery.redelivered);
            offsets.insert(delivery.offset);
            if delivery.offset >= 5 {
                consumer.ack([&delivery]).await?;
            }
        }

        // Phase 2: the second stream delivered everything, the first five
        // again, and sequences had no holes.
        assert_eq!(offsets.len(), 20);
        assert!(redelivered >= 5);
        assert_eq!(consumer.gaps(), 0);
        anyhow::Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_consumer_polled_under_a_short_timeout_keeps_its_restart() -> anyhow::Result<()> {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (client, log, _) = cluster().await?;
        client.publish("t", vec![Message::new("only")]).await?;
        // The first stream delivers and ends, the next three end at once:
        // restarts back off 0, 50, 100 and 200 ms, far longer than the
        // 5 ms each poll below waits.
        log.lock().expect("log lock").end_subscribes_after = [1, 0, 0, 0].into();
        let seeds = vec![client.leader().expect("a leader after publishing")];
        let client = Client::connect_with(seeds, ClientOptions::default())?;
        let mut consumer = client.subscribe("t", "s", 10).await?;
        let first = consumer.next().await.expect("consumer finished")?;

        // Phase 2: polled with a short timeout, the consumer survives the
        // breaks and gets the message again, unacked.
        let mut again = None;
        for _ in 0..2_000 {
            match tokio::time::timeout(Duration::from_millis(5), consumer.next()).await {
                Ok(delivery) => {
                    again = Some(delivery.expect("consumer finished")?);
                    break;
                }
                Err(_elapsed) => continue,
            }
        }
        let again = again.expect("no redelivery within 2,000 polls");
        assert_eq!(again.offset, first.offset);
        assert!(again.redelivered);
        anyhow::Ok(())
    })
    .await?
}

/// Runs the `raftmq` binary against `servers` with `stdin`, and returns its
/// stdout; fails unless it exits with 0.
async fn raftmq(servers: &[String], args: &[&str], stdin: &[u8]) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_raftmq"))
        .arg("--servers")
        .arg(servers.join(","))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await?;
    }
    let output = child.wait_with_output().await?;
    let stdout = String::from_utf8(output.stdout)?;
    anyhow::ensure!(
        output.status.success(),
        "raftmq {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[tokio::test]
async fn the_command_line_publishes_and_consumes() -> anyhow::Result<()> {
    tokio::time::timeout(TEST_DEADLINE, async {
        let (client, log, _) = cluster().await?;
        let servers = client.seeds().to_vec();

        // Phase 1: generated messages and stdin lines are all confirmed.
        let summary = raftmq(
            &servers,
            &["publish", "t", "--count", "50", "--size", "8", "--json"],
            b"",
        )
        .await?;
        let summary: serde_json::Value = serde_json::from_str(&summary)?;
        assert_eq!(summary["confirmed"], 50);
        let printed = raftmq(&servers, &["publish", "t", "--key", "k"], b"x\ny\nz\n").await?;
        assert_eq!(printed.trim(), "3 messages confirmed");
        assert_eq!(log.lock().expect("log lock").stored.len(), 53);

        // Phase 2: consuming prints every message once and acks all of them.
        let lines = raftmq(
            &servers,
            &[
                "consume",
                "t",
                "--subscription",
                "s",
                "--count",
                "53",
                "--json",
            ],
            b"",
        )
        .await?;
        let offsets: BTreeSet<u64> = lines
            .lines()
            .map(|line| {
                let delivery: serde_json::Value = serde_json::from_str(line)?;
                delivery["offset"]
                    .as_u64()
                    .ok_or_else(|| anyhow::anyhow!("no offset in {line}"))
            })
            .collect::<anyhow::Result<_>>()?;
        assert_eq!(offsets.len(), 53);
        assert_eq!(log.lock().expect("log lock").acked.len(), 53);

        // Phase 3: an idle subscription ends on --timeout-secs.
        let idle = raftmq(
            &servers,
            &["consume", "t", "--subscription", "s", "--timeout-secs", "1"],
            b"",
        )
        .await?;
        assert_eq!(idle, "");
        anyhow::Ok(())
    })
    .await?
}
