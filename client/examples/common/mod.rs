//! What the examples share: connecting, unique names, bounded waits.
//!
//! Each example uses part of this module.
#![allow(dead_code)]

use std::time::Duration;

use raftmq_client::{Client, Consumer, Delivery};

/// A client for `RAFTMQ_SERVERS` (comma-separated host:port), by default
/// the dev cluster of `cargo run -p raftmq-node -- dev`.
pub fn connect() -> anyhow::Result<Client> {
    let servers = std::env::var("RAFTMQ_SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into());
    Ok(Client::connect(
        servers.split(',').map(str::to_string).collect(),
    )?)
}

/// `name` made unique to this run, so that runs do not see each other's
/// messages.
pub fn unique(client: &Client, name: &str) -> String {
    format!("{name}.{:x}", client.id())
}

/// The next delivery, waiting at most ten seconds.
pub async fn next(consumer: &mut Consumer) -> anyhow::Result<Delivery> {
    match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
        Ok(Some(delivery)) => Ok(delivery?),
        Ok(None) => anyhow::bail!("the consumer ended"),
        Err(_) => anyhow::bail!("no delivery within 10 s"),
    }
}

pub fn text(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.payload).into_owned()
}
