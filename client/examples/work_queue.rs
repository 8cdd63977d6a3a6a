//! A work queue with fair dispatch (RabbitMQ tutorial 2): two workers
//! share one subscription, each holding one task at a time (prefetch 1),
//! so a busy worker is not handed more while the other is free.
//!
//! `cargo run -p raftmq-client --example work_queue` against a running
//! cluster (`RAFTMQ_SERVERS`, default the dev cluster).

mod common;

use std::time::Duration;

use raftmq_client::{Consumer, Message, SubscribeOptions, SubscriptionMode};

const TASKS: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = common::connect()?;
    let tasks = common::unique(&client, "example.tasks");
    client.create_topic(&tasks, 1).await?;
    let messages = (0..TASKS)
        .map(|i| Message::new(format!("task {i}")))
        .collect();
    client.publish(&tasks, messages).await?;

    let options = SubscribeOptions {
        prefetch: 1,
        mode: Some(SubscriptionMode::Shared),
        ..SubscribeOptions::default()
    };
    let mut workers = Vec::new();
    for (name, pace) in [("slow", 60), ("fast", 10)] {
        let consumer = client
            .subscribe_with(&tasks, "workers", options.clone())
            .await?;
        workers.push((
            name,
            tokio::spawn(work(consumer, Duration::from_millis(pace))),
        ));
    }
    let mut total = 0;
    for (name, worker) in workers {
        let count = worker.await??;
        println!("worker {name} did {count} tasks");
        anyhow::ensure!(count > 0, "worker {name} got nothing");
        total += count;
    }
    anyhow::ensure!(total == TASKS, "{total} tasks done, not {TASKS}");
    client.delete_topic(&tasks, Default::default()).await?;
    println!("work queue: {TASKS} tasks done by 2 workers");
    Ok(())
}

/// Takes tasks until none has come for a second, each taking `pace`: how
/// many it did.
async fn work(mut consumer: Consumer, pace: Duration) -> anyhow::Result<usize> {
    let mut count = 0;
    while let Ok(Some(task)) = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
        let task = task?;
        tokio::time::sleep(pace).await;
        consumer.ack([&task]).await?;
        count += 1;
    }
    Ok(count)
}
