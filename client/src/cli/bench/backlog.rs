//! A backlog deeper than consumers keep up with: fill N messages with no
//! consumer, print what each node then holds (memory, data directory,
//! snapshot), run the e2e bench beside it, then again while every node
//! takes a snapshot of the whole backlog, wipe one node's data and time its
//! rejoining by snapshot (and its peak memory meanwhile), kill all three
//! nodes and start them again
//! (time to a leader and to the first delivery), drain it with one
//! consumer acking as it goes, and print what the nodes hold once
//! everything is acked.

use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_client::{Client, Confirm, Message, ProducerOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::acker::Acker;
use super::local::LocalCluster;
use super::BenchArgs;

const PARTITIONS: u32 = 4;
const PREFETCH: u32 = 256;
/// Positions per ack request while draining.
const ACK_BATCH: usize = 256;
/// Ack requests in flight at once while draining.
const ACKS_IN_FLIGHT: usize = 8;
/// Let background work (snapshots, log purges) finish before reading the
/// nodes' usage.
const SETTLE: Duration = Duration::from_secs(5);
/// How far into the e2e run beside the backlog every node is asked for a
/// snapshot.
const SNAPSHOT_AFTER: Duration = Duration::from_secs(3);
/// How long the drain may go without a delivery before it gives up.
const DRAIN_IDLE_MAX: Duration = Duration::from_secs(30);

pub(crate) async fn run(
    client: &Client,
    tag: &str,
    args: &BenchArgs,
    mut local: Option<&mut LocalCluster>,
) -> anyhow::Result<Value> {
    let topic = format!("{tag}-backlog");
    client.create_topic(&topic, PARTITIONS).await?;
    let idle = usage(local.as_deref())?;

    super::progress(format!(
        "backlog: filling {} messages of {} bytes",
        args.backlog, args.size
    ));
    let started = Instant::now();
    let confirmed = fill(client, &topic, args).await?;
    let fill_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let held = usage(local.as_deref())?;
    if local.is_some() {
        // The fill left a gigabyte of dirty pages that the kernel writes
        // back over the next half minute, stalling every fsync of the one
        // disk the three nodes share: flush them, so that the e2e run
        // measures the snapshot, not the fill's writeback.
        super::progress("backlog: flushing the fill to disk (sync)");
        let _ = tokio::process::Command::new("sync").status().await;
    }
    // The same run without a snapshot first: what this machine's tail is
    // beside the backlog, against which the snapshot's cost shows.
    let beside = super::e2e::run(client, &format!("{tag}-beside"), args).await?;
    let across_snapshot = e2e_across_snapshot(client, tag, args).await?;
    let snapshotted = usage(local.as_deref())?;

    let rejoin = match local.as_deref_mut() {
        Some(local) => {
            super::progress("backlog: wiping node 3's data and starting it again");
            let (took, peak_rss_mib) = local.wipe_and_rejoin(3).await?;
            Some(json!({
                "node": 3,
                "caught_up_s": secs(took),
                "peak_rss_mib": peak_rss_mib,
            }))
        }
        None => None,
    };

    let restarted = match local.as_deref_mut() {
        Some(local) => {
            super::progress("backlog: killing every node (SIGKILL) and starting them again");
            Some((Instant::now(), local.kill_and_restart().await?))
        }
        None => None,
    };
    super::progress(format!("backlog: draining {confirmed} messages"));
    let cpu_before = cpu_seconds(local.as_deref())?;
    let drain = drain(client, &topic, confirmed).await?;
    let acked_at = Instant::now();
    let drain_cpu = cpu_seconds(local.as_deref())?
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| after - before)
        .collect::<Vec<f64>>();
    tokio::time::sleep(SETTLE).await;
    let acked = usage(local.as_deref())?;
    let restart = restarted.map(|(killed, to_leader)| {
        json!({
            "to_leader_s": secs(to_leader),
            "to_first_delivery_s": secs(drain.first.duration_since(killed)),
        })
    });
    let drain_s = acked_at.duration_since(drain.first).as_secs_f64();

    Ok(json!({
        "bench": "backlog",
        "messages": args.backlog,
        "size": args.size,
        "confirmed": confirmed,
        "fill_msgs_per_s": (confirmed as f64 / fill_s).round(),
        "rejoin": rejoin,
        "restart": restart,
        "drained": drain.count,
        "drain_msgs_per_s": (drain.count as f64 / drain_s).round(),
        // What the drain cost the nodes: on a machine with fewer cores
        // than busy processes, the rate follows it.
        "drain_node_cpu_s": drain_cpu.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<f64>>(),
        "drain_node_cpu_us_per_msg": (drain_cpu.iter().sum::<f64>() * 1e6 / drain.count.max(1) as f64).round(),
        "idle": idle,
        "held": held,
        "e2e_beside": beside,
        "e2e_across_snapshot": across_snapshot,
        "snapshotted": snapshotted,
        "acked": acked,
    }))
}

/// The e2e bench on a topic of its own while, `SNAPSHOT_AFTER` into it,
/// every node takes a snapshot holding the whole backlog: its latencies,
/// and each node's snapshot.
async fn e2e_across_snapshot(
    client: &Client,
    tag: &str,
    args: &BenchArgs,
) -> anyhow::Result<Value> {
    let snapshots = async {
        tokio::time::sleep(SNAPSHOT_AFTER).await;
        super::progress("backlog: every node takes a snapshot of the backlog");
        let asks = client.seeds().iter().map(|address| async move {
            match client.take_snapshot(address).await {
                Ok(taken) => json!({ "address": address, "index": taken.snapshot_index, "took_s": taken.took_ms as f64 / 1000.0 }),
                Err(error) => json!({ "address": address, "error": error.to_string() }),
            }
        });
        futures::future::join_all(asks).await
    };
    let tag = format!("{tag}-across");
    let (e2e, snapshots) = tokio::join!(super::e2e::run(client, &tag, args), snapshots);
    Ok(json!({ "e2e": e2e?, "snapshots": snapshots }))
}

fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Each local node's CPU seconds so far; none for a cluster elsewhere.
fn cpu_seconds(local: Option<&LocalCluster>) -> anyhow::Result<Vec<f64>> {
    Ok(local
        .map(LocalCluster::cpu_seconds)
        .transpose()?
        .unwrap_or_default())
}

fn usage(local: Option<&LocalCluster>) -> anyhow::Result<Value> {
    Ok(local
        .map(LocalCluster::usage)
        .transpose()?
        .unwrap_or(Value::Null))
}

/// Publishes the backlog through one pipelined producer; answers how many
/// were confirmed.
async fn fill(client: &Client, topic: &str, args: &BenchArgs) -> anyhow::Result<u64> {
    let options = ProducerOptions {
        window: args.window,
        ..Default::default()
    };
    let producer = client.producer_with(topic, options)?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    // Confirms are counted as they resolve, in a task of their own: `send`
    // is bounded by the window, this queue by its capacity.
    let (confirms, mut resolved) = mpsc::channel::<Confirm>(super::CONFIRMS_QUEUED_MAX);
    let counter = tokio::spawn(async move {
        let mut confirmed = 0u64;
        while let Some(confirm) = resolved.recv().await {
            confirmed += u64::from(confirm.await.is_ok());
        }
        confirmed
    });
    let tenth = (args.backlog / 10).max(1);
    for i in 0..args.backlog {
        confirms
            .send(producer.send(Message::new(payload.clone())).await?)
            .await?;
        if (i + 1) % tenth == 0 {
            super::progress(format!("backlog: {} sent", i + 1));
        }
    }
    drop(confirms);
    producer.close().await?;
    Ok(counter.await?)
}

/// What a drain saw.
struct Drain {
    /// First deliveries (not redeliveries).
    count: u64,
    /// When the first message arrived.
    first: Instant,
}

/// Receives `expected` messages with one consumer, acking in batches with
/// several acks in flight, until every ack is answered.
async fn drain(client: &Client, topic: &str, expected: u64) -> anyhow::Result<Drain> {
    let mut consumer = client.subscribe(topic, "drain", PREFETCH).await?;
    let acker = Acker::start(client, topic, "drain", ACKS_IN_FLIGHT);
    let (mut drained, mut batch) = (0u64, Vec::with_capacity(ACK_BATCH));
    let mut first = None;
    let tenth = (expected / 10).max(1);
    while drained < expected {
        let delivery = match tokio::time::timeout(DRAIN_IDLE_MAX, consumer.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) => break,
            Err(_) => anyhow::bail!("no delivery for {DRAIN_IDLE_MAX:?} after {drained}"),
        };
        first.get_or_insert_with(Instant::now);
        if !delivery.redelivered {
            drained += 1;
            if drained % tenth == 0 {
                super::progress(format!("backlog: {drained} drained"));
            }
        }
        batch.push(delivery.position());
        if batch.len() >= ACK_BATCH {
            acker.send(std::mem::take(&mut batch)).await?;
        }
    }
    acker.send(batch).await?;
    acker.finish().await?;
    Ok(Drain {
        count: drained,
        first: first.unwrap_or_else(Instant::now),
    })
}
