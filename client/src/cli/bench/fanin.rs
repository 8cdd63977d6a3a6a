//! Fan-in and fan-out at once: four producers and four consumers on four
//! topics, all running together; the aggregate rate is what all consumers
//! received per second of the whole run.

use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_client::{Client, Message};
use serde_json::{json, Value};

use super::BenchArgs;

const PAIRS: usize = 4;
const PREFETCH: u32 = 1_000;
const ACK_BATCH: usize = 500;
/// A consumer that hears nothing this long gives up.
const IDLE: Duration = Duration::from_secs(30);

pub(crate) async fn run(client: &Client, tag: &str, args: &BenchArgs) -> anyhow::Result<Value> {
    super::progress(format!(
        "fanin: {PAIRS} producers x {} messages, {PAIRS} consumers",
        args.fanin_messages
    ));
    let mut topics = Vec::new();
    for i in 0..PAIRS {
        let topic = format!("{tag}-fanin-{i}");
        client.create_topic(&topic, 2).await?;
        topics.push(topic);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let (count, size) = (args.fanin_messages, args.size);
    for topic in &topics {
        let (producing, topic_name) = (client.clone(), topic.clone());
        tasks.spawn(async move {
            let producer = producing.producer(&topic_name);
            let payload = Bytes::from(vec![b'x'; size]);
            for _ in 0..count {
                drop(producer.send(Message::new(payload.clone())).await?);
            }
            producer.close().await?;
            anyhow::Ok((0u64, started.elapsed()))
        });
        let (client, topic) = (client.clone(), topic.clone());
        tasks.spawn(async move {
            let mut consumer = client.subscribe(&topic, "bench", PREFETCH).await?;
            let (mut received, mut unacked) = (0u64, Vec::new());
            while received < count {
                match tokio::time::timeout(IDLE, consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        received += 1;
                        unacked.push(delivery);
                        if unacked.len() >= ACK_BATCH || received == count {
                            consumer.ack(&unacked).await?;
                            unacked.clear();
                        }
                    }
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(None) | Err(_) => break,
                }
            }
            anyhow::Ok((received, started.elapsed()))
        });
    }
    let (mut delivered, mut last) = (0u64, Duration::ZERO);
    while let Some(result) = tasks.join_next().await {
        let (received, at) = result??;
        delivered += received;
        last = last.max(at);
    }
    let published = args.fanin_messages * PAIRS as u64;
    let seconds = last.as_secs_f64();
    Ok(json!({
        "bench": "fanin",
        "producers": PAIRS,
        "consumers": PAIRS,
        "topics": PAIRS,
        "size": args.size,
        "published": published,
        "delivered": delivered,
        "elapsed_s": seconds,
        "delivered_msgs_per_s": (delivered as f64 / seconds).round(),
    }))
}
