//! Confirmed publish throughput: N messages through one pipelined producer,
//! each confirm timed from the moment it was handed to `send`.

use std::time::Instant;

use bytes::Bytes;
use raftmq_client::{Client, Confirm, Message, ProducerOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::local::LocalCluster;
use super::stats::Latencies;
use super::BenchArgs;

/// How long after the run background writes are still counted.
const WRITES_SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

pub(crate) async fn run(
    client: &Client,
    tag: &str,
    args: &BenchArgs,
    local: Option<&LocalCluster>,
) -> anyhow::Result<Value> {
    let topic = format!("{tag}-publish");
    client.create_topic(&topic, 4).await?;
    let options = ProducerOptions {
        window: args.window,
        ..Default::default()
    };
    let producer = client.producer_with(&topic, options)?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let written_before = local.map(LocalCluster::written_bytes).transpose()?;
    super::progress(format!(
        "publish: {} messages of {} bytes, window {}",
        args.messages, args.size, args.window
    ));

    let (confirms, mut timed) = mpsc::channel::<(Instant, Confirm)>(super::CONFIRMS_QUEUED_MAX);
    let timer = tokio::spawn(async move {
        let (mut latencies, mut failed) = (Latencies::new(), 0u64);
        while let Some((sent, confirm)) = timed.recv().await {
            match confirm.await {
                Ok(_) => latencies.record(sent.elapsed()),
                Err(_) => failed += 1,
            }
        }
        (latencies, failed)
    });
    let started = Instant::now();
    let tenth = (args.messages / 10).max(1);
    for i in 0..args.messages {
        let sent = Instant::now();
        let confirm = producer.send(Message::new(payload.clone())).await?;
        confirms.send((sent, confirm)).await?;
        if (i + 1) % tenth == 0 {
            super::progress(format!("publish: {} sent", i + 1));
        }
    }
    drop(confirms);
    producer.close().await?;
    let (latencies, failed) = timer.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let confirmed = latencies.count();
    let payload_bytes = confirmed * args.size as u64;
    let disk_per_payload = match (local, written_before) {
        (Some(local), Some(before)) => {
            // Count what the nodes write in the background because of this
            // run too (sled's page cache, log cleaning): let it settle.
            tokio::time::sleep(WRITES_SETTLE).await;
            let written = local.written_bytes()?.saturating_sub(before);
            Some(written as f64 / payload_bytes.max(1) as f64 / local.nodes() as f64)
        }
        _ => None,
    };
    Ok(json!({
        "bench": "publish",
        "messages": args.messages,
        "size": args.size,
        "window": args.window,
        "confirmed": confirmed,
        "failed": failed,
        "elapsed_s": elapsed,
        "msgs_per_s": (confirmed as f64 / elapsed).round(),
        "mb_per_s": (payload_bytes as f64 / 1e6 / elapsed * 10.0).round() / 10.0,
        "confirm_latency_ms": latencies.summary(),
        "disk_bytes_per_payload_byte_per_node": disk_per_payload.map(|r| (r * 100.0).round() / 100.0),
    }))
}
