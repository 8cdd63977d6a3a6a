//! Client-seen unavailability across leader crashes: a producer paced to
//! --rate and a consumer acking run on the local cluster (--local) or the
//! compose cluster (--compose) while its leader is SIGKILLed --kills times
//! (and started again after each, so every kill finds three nodes). Per kill: the time from the kill to the first
//! confirm, and to the first delivery, of a message sent after it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, BytesMut};
use raftmq_client::{Client, Message};
use serde_json::{json, Value};

use super::acker::Acker;
use super::compose::ComposeCluster;
use super::local::LocalCluster;
use super::stats::Latencies;
use super::BenchArgs;

const PREFETCH: u32 = 1_000;
const ACK_BATCH: usize = 100;
const ACKS_IN_FLIGHT: usize = 8;
/// Between a restart and the next kill: the restarted node catches up and
/// the leader's lease runs, as between crashes in production.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for the first confirm and delivery after a kill.
const RECOVERY_MAX: Duration = Duration::from_secs(60);

/// Since the run's origin, in µs: when messages were sent, and when they
/// were confirmed or delivered. Cleared after each kill.
#[derive(Default)]
struct Timeline {
    confirms: Vec<(u64, u64)>,
    deliveries: Vec<(u64, u64)>,
}

impl Timeline {
    /// The first confirm and the first delivery of a message sent at or
    /// after `from_us`, if both came.
    fn first_after(&self, from_us: u64) -> Option<(u64, u64)> {
        let first = |events: &[(u64, u64)]| {
            events
                .iter()
                .filter(|(sent, _)| *sent >= from_us)
                .map(|(_, at)| *at)
                .min()
        };
        Some((first(&self.confirms)?, first(&self.deliveries)?))
    }
}

/// What the bench crashes.
pub(crate) enum Target<'a> {
    Local(&'a mut LocalCluster),
    Compose(ComposeCluster),
}

impl Target<'_> {
    async fn leader(&self) -> anyhow::Result<u16> {
        match self {
            Target::Local(local) => local.leader().await,
            Target::Compose(compose) => compose.leader().await,
        }
    }

    fn kill(&mut self, id: u16) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => {
                local.kill(id);
                Ok(())
            }
            Target::Compose(compose) => compose.kill(id),
        }
    }

    fn restart(&mut self, id: u16) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => local.restart(id),
            Target::Compose(compose) => compose.restart(id),
        }
    }

    async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => local.wait_for_leader(within).await,
            Target::Compose(compose) => compose.wait_for_leader(within).await,
        }
    }
}

pub(crate) async fn run(
    client: &Client,
    tag: &str,
    args: &BenchArgs,
    mut local: Target<'_>,
) -> anyhow::Result<Value> {
    let topic = format!("{tag}-failover");
    client.create_topic(&topic, 4).await?;
    let origin = Instant::now();
    let since = move || origin.elapsed().as_micros() as u64;
    let timeline = Arc::new(Mutex::new(Timeline::default()));

    let producer = client.producer(&topic);
    // Paced by an interval: 1 to 1,000,000 messages per second.
    let (size, rate) = (args.size.max(16), args.rate.clamp(1, 1_000_000));
    let sender = {
        let timeline = timeline.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            for id in 0u64.. {
                ticks.tick().await;
                let sent_us = since();
                let mut payload = BytesMut::with_capacity(size);
                payload.put_u64(id);
                payload.put_u64(sent_us);
                payload.resize(size, b'x');
                let confirm = producer.send(Message::new(payload.freeze())).await?;
                let timeline = timeline.clone();
                tokio::spawn(async move {
                    if confirm.await.is_ok() {
                        let mut timeline = timeline.lock().expect("timeline");
                        timeline.confirms.push((sent_us, since()));
                    }
                });
            }
            anyhow::Ok(())
        })
    };
    let mut consumer = client.subscribe(&topic, "bench", PREFETCH).await?;
    let acker = Acker::start(client, &topic, "bench", ACKS_IN_FLIGHT);
    let receiver = {
        let timeline = timeline.clone();
        tokio::spawn(async move {
            let mut unacked = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_millis(5), consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        let sent_us = delivery
                            .payload
                            .get(8..16)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u64::from_be_bytes);
                        timeline
                            .lock()
                            .expect("timeline")
                            .deliveries
                            .push((sent_us, since()));
                        unacked.push(delivery.position());
                        if unacked.len() >= ACK_BATCH {
                            acker.send(std::mem::take(&mut unacked)).await?;
                        }
                    }
                    Ok(Some(Err(e))) => return Err(anyhow::Error::from(e)),
                    Ok(None) => return Ok(()),
                    Err(_idle) => acker.send(std::mem::take(&mut unacked)).await?,
                }
            }
        })
    };

    let (mut publish, mut consume) = (Latencies::new(), Latencies::new());
    for kill in 1..=args.kills {
        tokio::time::sleep(SETTLE).await;
        let leader = local.leader().await?;
        // Timed from when the kill returns: the node is dead by then. Timed
        // from before, the messages confirmed while `docker kill` runs
        // would count as recovered.
        local.kill(leader)?;
        let killed_us = since();
        let recovered = async {
            loop {
                let seen = timeline.lock().expect("timeline").first_after(killed_us);
                if let Some(seen) = seen {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let (confirmed_us, delivered_us) = tokio::time::timeout(RECOVERY_MAX, recovered)
            .await
            .with_context(|| {
                format!("kill {kill}: nothing confirmed and delivered in {RECOVERY_MAX:?}")
            })?;
        let (to_confirm, to_delivery) = (
            Duration::from_micros(confirmed_us - killed_us),
            Duration::from_micros(delivered_us - killed_us),
        );
        publish.record(to_confirm);
        consume.record(to_delivery);
        super::progress(format!(
            "failover: kill {kill}/{} of node {leader}: publishing again after {:.0} ms, receiving after {:.0} ms",
            args.kills,
            to_confirm.as_secs_f64() * 1000.0,
            to_delivery.as_secs_f64() * 1000.0
        ));
        *timeline.lock().expect("timeline") = Timeline::default();
        local.restart(leader)?;
        local.wait_for_leader(Duration::from_secs(30)).await?;
    }
    sender.abort();
    receiver.abort();
    Ok(json!({
        "bench": "failover",
        "kills": args.kills,
        "rate": rate,
        "unavailable_ms": { "publish": publish.summary(), "consume": consume.summary() },
    }))
}

#[cfg(test)]
mod tests {
    use super::Timeline;

    #[test]
    fn recovery_counts_only_messages_sent_after_the_kill() {
        let timeline = Timeline {
            // Sent before the kill at 100 but confirmed late: not recovery.
            confirms: vec![(90, 150), (120, 400), (130, 300)],
            deliveries: vec![(95, 160), (120, 500)],
        };
        assert_eq!(timeline.first_after(100), Some((300, 500)));
        assert_eq!(timeline.first_after(125), None, "nothing delivered yet");
    }
}
