//! Publish-to-delivery latency at a fixed rate: a producer paced to R
//! messages per second for T seconds, a consumer acking as it goes (from a
//! task of its own, so that no delivery waits behind an ack); every
//! payload carries its send time, and every confirmed message must arrive.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use raftmq_client::{Client, Message};
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use super::acker::Acker;
use super::stats::Latencies;
use super::BenchArgs;

/// How long the consumer may wait for the last messages after the run.
const DRAIN: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(1);
const PREFETCH: u32 = 1_000;
const ACK_BATCH: usize = 100;
/// Ack requests in flight at once.
const ACKS_IN_FLIGHT: usize = 8;

pub(crate) async fn run(client: &Client, tag: &str, args: &BenchArgs) -> anyhow::Result<Value> {
    let topic = format!("{tag}-e2e");
    client.create_topic(&topic, 4).await?;
    let origin = Instant::now();
    let mut consumer = client.subscribe(&topic, "bench", PREFETCH).await?;
    let acker = Acker::start(client, &topic, "bench", ACKS_IN_FLIGHT);
    super::progress(format!("e2e: {} msgs/s for {} s", args.rate, args.seconds));

    let total = args.rate * args.seconds;
    let producer = client.producer(&topic);
    let (size, rate) = (args.size.max(16), args.rate);
    let sender = tokio::spawn(async move {
        let mut confirms = Vec::with_capacity(total as usize);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let per_tick = rate as f64 * TICK.as_secs_f64();
        let (mut sent, mut due) = (0u64, 0f64);
        while sent < total {
            ticks.tick().await;
            due += per_tick;
            while (sent as f64) < due && sent < total {
                let mut payload = BytesMut::with_capacity(size);
                payload.put_u64(sent);
                payload.put_u64(origin.elapsed().as_micros() as u64);
                payload.resize(size, b'x');
                confirms.push((sent, producer.send(Message::new(payload.freeze())).await?));
                sent += 1;
            }
        }
        let mut confirmed = BTreeSet::new();
        for (id, confirm) in confirms {
            if confirm.await.is_ok() {
                confirmed.insert(id);
            }
        }
        producer.close().await?;
        anyhow::Ok(confirmed)
    });

    let (mut latencies, mut delivered) = (Latencies::new(), BTreeSet::new());
    let mut unacked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(args.seconds) + DRAIN;
    while (delivered.len() as u64) < total && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(5), consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                let (id, sent_us) = stamp(&delivery.payload);
                if delivered.insert(id) {
                    latencies.record(
                        origin
                            .elapsed()
                            .saturating_sub(Duration::from_micros(sent_us)),
                    );
                }
                unacked.push(delivery.position());
                if unacked.len() >= ACK_BATCH {
                    acker.send(std::mem::take(&mut unacked)).await?;
                }
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => break,
            Err(_idle) => acker.send(std::mem::take(&mut unacked)).await?,
        }
    }
    acker.send(unacked).await?;
    acker.finish().await?;
    let confirmed = sender.await??;
    let lost = confirmed.difference(&delivered).count();
    Ok(json!({
        "bench": "e2e",
        "rate": args.rate,
        "seconds": args.seconds,
        "size": size,
        "sent": total,
        "confirmed": confirmed.len(),
        "delivered": delivered.len(),
        "lost": lost,
        "latency_ms": latencies.summary(),
    }))
}

/// The message number and send time (µs since the run's origin) that the
/// first 16 payload bytes carry.
fn stamp(payload: &Bytes) -> (u64, u64) {
    let word = |i: usize| {
        payload
            .get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    (word(0), word(1))
}
