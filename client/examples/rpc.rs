//! RPC (RabbitMQ tutorial 6): a server answers requests on a topic; the
//! client's `Requester` sends each with a reply topic of its own and a
//! correlation id, and waits for the matching reply.
//!
//! `cargo run -p raftmq-client --example rpc`

mod common;

use std::time::Duration;

use raftmq_client::Message;

fn fib(n: u64) -> u64 {
    (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = common::connect()?;
    let queue = common::unique(&client, "example.rpc_queue");
    client.create_topic(&queue, 1).await?;

    let server_client = client.clone();
    let mut requests = client.subscribe(&queue, "server", 10).await?;
    let server = tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let n: u64 = common::text(&request).parse().unwrap_or(0);
            let answer = Message::new(fib(n).to_string());
            server_client.reply(&request, answer).await?;
            requests.ack([&request]).await?;
        }
        anyhow::Ok(())
    });

    let requester = client.requester().await?;
    for n in [1, 10, 30] {
        let reply = requester
            .request(&queue, Message::new(n.to_string()), Duration::from_secs(10))
            .await?;
        let got = common::text(&reply);
        println!("rpc: fib({n}) = {got}");
        anyhow::ensure!(got == fib(n).to_string(), "fib({n}) answered {got}");
    }
    server.abort();
    client.delete_topic(&queue, Default::default()).await?;
    println!("rpc: 3 requests, 3 matching replies");
    Ok(())
}
