//! Publish/subscribe (RabbitMQ tutorial 3): a fanout exchange, and each
//! subscriber with a server-named, exclusive topic of its own bound to it,
//! deleted a while after its subscriber goes.
//!
//! `cargo run -p raftmq-client --example publish_subscribe`

mod common;

use std::time::Duration;

use raftmq_client::{Binding, ExchangeKind, ExchangeOptions, Message, TopicOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = common::connect()?;
    let logs = common::unique(&client, "example.logs");
    client
        .declare_exchange(&logs, ExchangeKind::Fanout, ExchangeOptions::default())
        .await?;
    let mine = TopicOptions {
        exclusive: true,
        expires: Some(Duration::from_secs(10)),
        ..TopicOptions::default()
    };
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        let topic = client.declare_server_named(1, mine).await?;
        client.bind(&logs, &Binding::key(&topic, "")).await?;
        subscribers.push(client.subscribe(&topic, "reader", 10).await?);
    }
    let lines = ["starting", "working", "done"];
    let messages = lines.iter().map(|line| Message::new(*line)).collect();
    client
        .publish_to_exchange(&logs, "", messages, false)
        .await?;
    for (n, subscriber) in subscribers.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in lines {
            let delivery = common::next(subscriber).await?;
            subscriber.ack([&delivery]).await?;
            got.push(common::text(&delivery));
        }
        println!("subscriber {n} ({}) got {got:?}", subscriber.topic());
        anyhow::ensure!(got == lines, "subscriber {n} got {got:?}");
    }
    client.delete_exchange(&logs, false).await?;
    println!(
        "pub/sub: each of 2 subscribers got {} messages",
        lines.len()
    );
    Ok(())
}
