//! Delayed retry, then a dead letter: a consumer that fails a message
//! returns it with a delay; after `max_deliveries` failures it moves to
//! the dead-letter topic with its reason (RabbitMQ's retry through a
//! dead-letter exchange and a TTL queue, in one subscription setting).
//!
//! `cargo run -p raftmq-client --example retry`

mod common;

use std::time::{Duration, Instant};

use raftmq_client::{Message, NackOptions, SubscribeOptions};

const MAX_DELIVERIES: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = common::connect()?;
    let jobs = common::unique(&client, "example.jobs");
    let failed = common::unique(&client, "example.failed");
    for topic in [&jobs, &failed] {
        client.create_topic(topic, 1).await?;
    }
    client
        .publish(&jobs, vec![Message::new("always fails")])
        .await?;
    let options = SubscribeOptions {
        prefetch: 1,
        max_deliveries: MAX_DELIVERIES,
        dead_letter_topic: Some(failed.clone()),
        ..SubscribeOptions::default()
    };
    let mut consumer = client.subscribe_with(&jobs, "worker", options).await?;
    let started = Instant::now();
    for attempt in 1..=MAX_DELIVERIES {
        let delivery = common::next(&mut consumer).await?;
        println!(
            "attempt {} after {:?}: failing it",
            delivery.attempts,
            started.elapsed()
        );
        anyhow::ensure!(
            delivery.attempts == attempt,
            "attempt {} came as {attempt}",
            delivery.attempts
        );
        let retry = NackOptions {
            delay: BACKOFF,
            ..NackOptions::default()
        };
        consumer.nack_with([&delivery], retry).await?;
    }
    let mut dead = client.subscribe(&failed, "inspect", 1).await?;
    let letter = common::next(&mut dead).await?;
    dead.ack([&letter]).await?;
    let reason = letter
        .headers
        .get("x-raftmq-dead-letter-reason")
        .cloned()
        .unwrap_or_default();
    println!("dead letter {:?}, reason {reason}", common::text(&letter));
    anyhow::ensure!(reason == "max-deliveries", "reason {reason:?}");
    for topic in [&jobs, &failed] {
        client.delete_topic(topic, Default::default()).await?;
    }
    println!("retry: {MAX_DELIVERIES} attempts, then dead-lettered with reason max-deliveries");
    Ok(())
}
