//! Target: every public request, decoded and validated by a running node.
//! Valid requests of each RPC, mutated as encoded protobuf and decoded
//! again, are sent to a one-node cluster: no panic, every answer a status
//! or a response, the node still answering afterwards, and its state's
//! invariants holding.

use std::time::Duration;

use prost::Message as _;
use raftmq_proto::v1;
use raftmq_proto::v1::broker_client::BrokerClient;
use rand::rngs::StdRng;
use rand::Rng;
use tonic::transport::Channel;

use crate::mutate::mutate;

/// Longest any one call may take: a request stuck for good is a finding.
const CALL_WITHIN: Duration = Duration::from_secs(15);

/// One RPC's valid request, and its name.
struct Seed {
    rpc: &'static str,
    bytes: Vec<u8>,
}

fn seed(rpc: &'static str, message: impl prost::Message) -> Seed {
    Seed {
        rpc,
        bytes: message.encode_to_vec(),
    }
}

fn messages() -> Vec<v1::Message> {
    vec![
        v1::Message {
            key: Some(b"k1".to_vec().into()),
            payload: b"hello".to_vec().into(),
            headers: [("h".to_string(), "v".to_string())].into(),
            properties: Some(Box::new(v1::Properties {
                ttl_ms: Some(5_000),
                delay_ms: Some(100),
                priority: Some(2),
                correlation_id: Some("c".to_string()),
                ..Default::default()
            })),
        },
        v1::Message {
            payload: b"plain".to_vec().into(),
            ..Default::default()
        },
    ]
}

fn corpus() -> Vec<Seed> {
    let positions = vec![v1::Position {
        partition: 0,
        offset: 0,
    }];
    vec![
        seed(
            "CreateTopic",
            v1::CreateTopicRequest {
                name: "t".to_string(),
                partitions: 2,
                max_messages: 100,
                max_priority: 3,
                ..Default::default()
            },
        ),
        seed(
            "DeleteTopic",
            v1::DeleteTopicRequest {
                name: "t".to_string(),
                if_unused: true,
                if_empty: true,
            },
        ),
        seed(
            "DeleteSubscription",
            v1::DeleteSubscriptionRequest {
                topic: "t".to_string(),
                subscription: "s".to_string(),
            },
        ),
        seed("ListTopics", v1::ListTopicsRequest {}),
        seed(
            "TopicStats",
            v1::TopicStatsRequest {
                topic: "t".to_string(),
            },
        ),
        seed(
            "DeclareExchange",
            v1::DeclareExchangeRequest {
                name: "x".to_string(),
                r#type: v1::ExchangeType::Topic as i32,
                ..Default::default()
            },
        ),
        seed(
            "DeleteExchange",
            v1::DeleteExchangeRequest {
                name: "x".to_string(),
                if_unused: false,
            },
        ),
        seed("ListExchanges", v1::ListExchangesRequest {}),
        seed(
            "Bind",
            v1::BindRequest {
                exchange: "x".to_string(),
                binding: Some(v1::Binding {
                    topic: "t".to_string(),
                    routing_key: "a.#".to_string(),
                    arguments: Default::default(),
                }),
            },
        ),
        seed(
            "PublishToExchange",
            v1::PublishToExchangeRequest {
                exchange: "x".to_string(),
                routing_key: "a.b".to_string(),
                messages: messages(),
                mandatory: true,
            },
        ),
        seed(
            "Publish",
            v1::PublishRequest {
                topic: "t".to_string(),
                messages: messages(),
                request_id: 1,
                producer_id: 7,
                sequence: 0,
            },
        ),
        seed(
            "Subscribe",
            v1::SubscribeRequest {
                topic: "t".to_string(),
                subscription: "s".to_string(),
                prefetch: 2,
                ack_timeout_ms: 200,
                max_deliveries: 2,
                dead_letter_topic: Some("t".to_string()),
                ..Default::default()
            },
        ),
        seed(
            "Ack",
            v1::AckRequest {
                topic: "t".to_string(),
                subscription: "s".to_string(),
                positions: positions.clone(),
            },
        ),
        seed(
            "Nack",
            v1::NackRequest {
                topic: "t".to_string(),
                subscription: "s".to_string(),
                positions,
                reject: false,
                delay_ms: 50,
            },
        ),
        seed("ClusterStatus", v1::ClusterStatusRequest {}),
        seed("RemoveNode", v1::RemoveNodeRequest { node_id: 2 }),
    ]
}

/// Sends mutated requests to the node at `addr` for as long as `more`
/// says: how many decoded and were sent.
pub async fn run(
    rng: &mut StdRng,
    addr: &str,
    mut more: impl FnMut() -> bool,
) -> Result<u64, String> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let client = BrokerClient::new(channel);
    let corpus = corpus();
    let mut sent = 0;
    while more() {
        let seed = &corpus[rng.gen_range(0..corpus.len())];
        let other = &corpus[rng.gen_range(0..corpus.len())].bytes;
        let bytes = mutate(rng, &seed.bytes, other);
        let call = send(client.clone(), seed.rpc, &bytes);
        match tokio::time::timeout(CALL_WITHIN, call).await {
            Ok(Some(())) => sent += 1,
            Ok(None) => {}
            Err(_) => {
                return Err(format!(
                    "{} did not answer within {CALL_WITHIN:?}: {bytes:?}",
                    seed.rpc
                ))
            }
        }
    }
    Ok(sent)
}

/// Decodes `bytes` as `rpc`'s request and sends it; `None` if it does not
/// decode. Any answer will do: only a hang or a panic is a finding.
async fn send(mut client: BrokerClient<Channel>, rpc: &str, bytes: &[u8]) -> Option<()> {
    macro_rules! unary {
        ($method:ident, $request:ty) => {{
            let request = <$request>::decode(bytes).ok()?;
            let _ = client.$method(request).await;
        }};
    }
    match rpc {
        "CreateTopic" => unary!(create_topic, v1::CreateTopicRequest),
        "DeleteTopic" => unary!(delete_topic, v1::DeleteTopicRequest),
        "DeleteSubscription" => unary!(delete_subscription, v1::DeleteSubscriptionRequest),
        "ListTopics" => unary!(list_topics, v1::ListTopicsRequest),
        "TopicStats" => unary!(topic_stats, v1::TopicStatsRequest),
        "DeclareExchange" => unary!(declare_exchange, v1::DeclareExchangeRequest),
        "DeleteExchange" => unary!(delete_exchange, v1::DeleteExchangeRequest),
        "ListExchanges" => unary!(list_exchanges, v1::ListExchangesRequest),
        "Bind" => unary!(bind, v1::BindRequest),
        "PublishToExchange" => unary!(publish_to_exchange, v1::PublishToExchangeRequest),
        "Publish" => unary!(publish, v1::PublishRequest),
        "Ack" => unary!(ack, v1::AckRequest),
        "Nack" => unary!(nack, v1::NackRequest),
        "ClusterStatus" => unary!(cluster_status, v1::ClusterStatusRequest),
        "RemoveNode" => unary!(remove_node, v1::RemoveNodeRequest),
        "Subscribe" => {
            let request = v1::SubscribeRequest::decode(bytes).ok()?;
            // A consumer takes what comes within a moment, acks nothing,
            // and leaves: its messages return.
            if let Ok(response) = client.subscribe(request).await {
                let mut stream = response.into_inner();
                let _ = tokio::time::timeout(Duration::from_millis(20), stream.message()).await;
            }
        }
        other => unreachable!("no RPC {other} in the corpus"),
    }
    Some(())
}
