//! Routing (RabbitMQ tutorial 4): a direct exchange sends each log line
//! to the topics bound with its severity.
//!
//! `cargo run -p raftmq-client --example routing`

mod common;

use std::collections::BTreeSet;

use raftmq_client::{Binding, ExchangeKind, ExchangeOptions, Message, Routed};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = common::connect()?;
    let logs = common::unique(&client, "example.direct_logs");
    let alerts = common::unique(&client, "example.alerts");
    let everything = common::unique(&client, "example.everything");
    client
        .declare_exchange(&logs, ExchangeKind::Direct, ExchangeOptions::default())
        .await?;
    for topic in [&alerts, &everything] {
        client.create_topic(topic, 1).await?;
    }
    for severity in ["error", "warning"] {
        client.bind(&logs, &Binding::key(&alerts, severity)).await?;
    }
    for severity in ["error", "warning", "info"] {
        client
            .bind(&logs, &Binding::key(&everything, severity))
            .await?;
    }
    for severity in ["info", "warning", "error", "debug"] {
        let message = Message::new(format!("a {severity} line"));
        let routed = client
            .publish_to_exchange(&logs, severity, vec![message], true)
            .await?;
        match &routed[0] {
            Routed::To(placements) => {
                let to: Vec<&str> = placements.iter().map(|(topic, _)| topic.as_str()).collect();
                println!("{severity:>7} -> {to:?}");
            }
            Routed::Returned => println!("{severity:>7} -> returned: no binding for it"),
            Routed::Dropped => anyhow::bail!("a mandatory publish was dropped"),
        }
        let returned = routed[0] == Routed::Returned;
        anyhow::ensure!(returned == (severity == "debug"), "{severity}: {routed:?}");
    }
    for (topic, expected) in [(&alerts, 2), (&everything, 3)] {
        let mut consumer = client.subscribe(topic, "reader", 10).await?;
        let mut got = BTreeSet::new();
        for _ in 0..expected {
            let delivery = common::next(&mut consumer).await?;
            consumer.ack([&delivery]).await?;
            got.insert(common::text(&delivery));
        }
        println!("{topic} got {got:?}");
        anyhow::ensure!(got.len() == expected, "{topic} got {got:?}");
        client.delete_topic(topic, Default::default()).await?;
    }
    client.delete_exchange(&logs, false).await?;
    println!("routing: alerts got 2, everything got 3, debug was returned");
    Ok(())
}
