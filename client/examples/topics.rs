//! Topics (RabbitMQ tutorial 5): a topic exchange routes by patterns over
//! `<facility>.<severity>` keys: `*` one word, `#` zero or more.
//!
//! `cargo run -p raftmq-client --example topics`

mod common;

use std::collections::BTreeSet;

use raftmq_client::{Binding, ExchangeKind, ExchangeOptions, Message};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = common::connect()?;
    let logs = common::unique(&client, "example.topic_logs");
    client
        .declare_exchange(&logs, ExchangeKind::Topic, ExchangeOptions::default())
        .await?;
    let bindings = [("critical", "*.critical"), ("kernel", "kern.#")];
    let mut topics = Vec::new();
    for (name, pattern) in bindings {
        let topic = common::unique(&client, &format!("example.{name}"));
        client.create_topic(&topic, 1).await?;
        client.bind(&logs, &Binding::key(&topic, pattern)).await?;
        topics.push((topic, pattern));
    }
    for key in ["kern.critical", "kern.info", "app.critical", "app.info"] {
        client
            .publish_to_exchange(&logs, key, vec![Message::new(key)], false)
            .await?;
    }
    let expected = [
        BTreeSet::from(["kern.critical".to_string(), "app.critical".into()]),
        BTreeSet::from(["kern.critical".to_string(), "kern.info".into()]),
    ];
    for ((topic, pattern), expected) in topics.iter().zip(expected) {
        let mut consumer = client.subscribe(topic, "reader", 10).await?;
        let mut got = BTreeSet::new();
        for _ in 0..expected.len() {
            let delivery = common::next(&mut consumer).await?;
            consumer.ack([&delivery]).await?;
            got.insert(common::text(&delivery));
        }
        println!("{pattern:>12} got {got:?}");
        anyhow::ensure!(got == expected, "{pattern} got {got:?}");
        client.delete_topic(topic, Default::default()).await?;
    }
    client.delete_exchange(&logs, false).await?;
    println!("topics: every pattern got exactly its keys");
    Ok(())
}
