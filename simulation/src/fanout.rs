//! A fanout exchange under the faults: each message published through it
//! (one request each) must reach both topics bound to it, and one whose
//! TTL ran out before anyone read it must reach each topic's dead-letter
//! topic instead, with reason `expired`, and never a consumer after its
//! time. Expired and dead-lettered is not lost. Time is the state
//! machine's: while a leader's clock lags (a clock fault) it stands still,
//! and a message read then is still in time. A publish through an exchange carries no
//! producer id, so a retried one may be stored twice: a message must come,
//! and may come again.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use raftmq_client::{
    Binding, Client, ExchangeKind, ExchangeOptions, Message, Properties, Routed, SubscribeOptions,
    TopicOptions,
};

use crate::oracle::Oracle;
use crate::trace::{now, Trace};
use crate::workload::{create_topic, pause, App, Workload};

const EXCHANGE: &str = "fan";
const TOPICS: [&str; 2] = ["fan-a", "fan-b"];
const DEAD: &str = "fan-dead";
const SUBSCRIPTION: &str = "checker";
const MESSAGES: u32 = 20;
/// One message in this many is published with a TTL that has run out by
/// the time it is read.
const EXPIRING_ONE_IN: u32 = 4;
/// How long a topic is read past the last message it must deliver, to
/// catch one it must not.
const QUIET: Duration = Duration::from_millis(500);

/// A message whose publish was confirmed: its payload, and whether it was
/// published to expire.
pub type Fanned = (Bytes, bool);

/// A delivery as the check needs it: payload, the topic a dead letter
/// came from (else empty), and whether it was handed out after its TTL.
type Read = (Bytes, String, bool);

/// The TTL of the messages published to expire.
const TTL_MS: u32 = 1;

/// Declares the exchange and its topics, binds them, creates their
/// subscriptions (with the dead-letter topic, before anything is
/// published), and publishes; what was confirmed.
pub async fn publish(workload: &Workload, oracle: &Oracle, trace: &Trace) -> Vec<Fanned> {
    let (client, mut rng) = workload.client(App::Fanout);
    for topic in TOPICS.into_iter().chain([DEAD]) {
        create_topic(
            workload,
            App::Fanout,
            topic,
            1,
            TopicOptions::default(),
            trace,
        )
        .await;
    }
    let declared = retry(workload, trace, "declare exchange", || {
        client.declare_exchange(EXCHANGE, ExchangeKind::Fanout, ExchangeOptions::default())
    })
    .await;
    let mut ready = declared.is_some();
    for topic in TOPICS {
        let binding = Binding::key(topic, "");
        let bound = retry(workload, trace, "bind", || client.bind(EXCHANGE, &binding)).await;
        let subscribed = retry(workload, trace, "subscribe", || {
            client.subscribe_with(topic, SUBSCRIPTION, options())
        })
        .await;
        ready &= bound.is_some() && subscribed.is_some();
    }
    let mut confirmed = Vec::new();
    for n in 0..MESSAGES {
        if !ready || now() >= workload.produce_until {
            break;
        }
        let expiring = n % EXPIRING_ONE_IN == 0;
        let payload = Bytes::from(format!("fan {n}"));
        let properties = Properties {
            ttl_ms: expiring.then_some(TTL_MS),
            ..Properties::default()
        };
        // Keyed, so that the planted `skip-message` (keyless only) stays the
        // lost-message checker's to catch.
        let message = Message::new(payload.clone())
            .with_key("fan")
            .with_properties(properties);
        match client
            .publish_to_exchange(EXCHANGE, "", vec![message], false)
            .await
        {
            Ok(routed) => match routed.as_slice() {
                [Routed::To(placements)] if placements.len() == TOPICS.len() => {
                    confirmed.push((payload, expiring));
                }
                other => oracle.violation(format!(
                    "fanout {payload:?} routed {other:?}, not to both bound topics"
                )),
            },
            Err(error) => trace.record(now(), format!("fanout {payload:?}: {error}")),
        }
        pause(&mut rng).await;
    }
    trace.record(now(), format!("fanout: {} confirmed", confirmed.len()));
    confirmed
}

/// Reads both topics and the dead-letter topic: every confirmed message
/// that was not to expire reached both topics; one that was to expire
/// reached a consumer only in time (by the state machine's clock), and
/// otherwise the dead-letter topic, from each topic, as expired.
pub async fn check(workload: &Workload, confirmed: &[Fanned], oracle: &Oracle, trace: &Trace) {
    if confirmed.is_empty() {
        return;
    }
    let (client, _) = workload.client(App::Fanout);
    let (expiring, lasting): (Vec<&Fanned>, Vec<&Fanned>) = confirmed.iter().partition(|(_, e)| *e);
    let lasting: BTreeSet<Bytes> = lasting.into_iter().map(|(p, _)| p.clone()).collect();
    let expiring: BTreeSet<Bytes> = expiring.into_iter().map(|(p, _)| p.clone()).collect();
    // Each expiring message a topic delivered in time: it owes no dead
    // letter from there.
    let mut in_time: BTreeSet<(Bytes, String)> = BTreeSet::new();
    for topic in TOPICS {
        let got = read(workload, &client, topic, SUBSCRIPTION, options(), |got| {
            lasting.iter().all(|p| got.iter().any(|(g, ..)| g == p))
        })
        .await;
        for missing in lasting
            .iter()
            .filter(|p| !got.iter().any(|(g, ..)| g == *p))
        {
            oracle.violation(format!("fanout {missing:?} never reached {topic}"));
        }
        for (payload, _, late) in got.iter().filter(|(p, ..)| expiring.contains(p)) {
            if *late {
                oracle.violation(format!(
                    "fanout {payload:?} delivered from {topic} after its TTL"
                ));
            } else {
                in_time.insert((payload.clone(), topic.to_string()));
            }
        }
    }
    let want: BTreeSet<(Bytes, String)> = expiring
        .iter()
        .flat_map(|p| TOPICS.map(|topic| (p.clone(), topic.to_string())))
        .filter(|letter| !in_time.contains(letter))
        .collect();
    let inspect = SubscribeOptions {
        prefetch: 16,
        ..SubscribeOptions::default()
    };
    let letters = read(workload, &client, DEAD, "inspect", inspect, |got| {
        want.iter()
            .all(|w| got.iter().any(|(p, from, _)| (p, from) == (&w.0, &w.1)))
    })
    .await;
    for (payload, from) in &want {
        if !letters.iter().any(|(p, f, _)| p == payload && f == from) {
            oracle.violation(format!(
                "fanout {payload:?} expired in {from} but was not dead-lettered"
            ));
        }
    }
    trace.record(now(), "fanout checked".to_string());
}

/// The topics' subscriptions: their expired messages go to `DEAD`.
fn options() -> SubscribeOptions {
    SubscribeOptions {
        prefetch: 16,
        dead_letter_topic: Some(DEAD.into()),
        ..SubscribeOptions::default()
    }
}

/// Reads `topic` (acking everything) until `enough` holds of what came and
/// then `QUIET` passes without more, or the deadline: each delivery, dead
/// letters only with reason `expired`.
async fn read(
    workload: &Workload,
    client: &Client,
    topic: &str,
    subscription: &str,
    options: SubscribeOptions,
    enough: impl Fn(&[Read]) -> bool,
) -> Vec<Read> {
    let mut got = Vec::new();
    while now() < workload.deadline {
        let attached = workload
            .by_deadline(client.subscribe_with(topic, subscription, options.clone()))
            .await;
        let Some(Ok(mut consumer)) = attached else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let wait = if enough(&got) {
                QUIET
            } else {
                workload.deadline.saturating_sub(now())
            };
            let Ok(Some(Ok(delivery))) = tokio::time::timeout(wait, consumer.next()).await else {
                break;
            };
            let header = |name: &str| delivery.headers.get(name).cloned().unwrap_or_default();
            let from = header("x-raftmq-source-topic");
            if from.is_empty() || header("x-raftmq-dead-letter-reason") == "expired" {
                let ttl = delivery.properties.as_deref().and_then(|p| p.ttl_ms);
                let expired_at = delivery.publish_time_ms + u64::from(ttl.unwrap_or(0));
                let late =
                    ttl.is_some() && from.is_empty() && delivery.decided_time_ms >= expired_at;
                got.push((delivery.payload.clone(), from, late));
            }
            let _ = consumer.ack([&delivery]).await;
        }
        if enough(&got) {
            break;
        }
    }
    got
}

/// Runs `attempt` until it succeeds or the chaos phase ends: its value.
async fn retry<T, E: std::fmt::Display, Fut>(
    workload: &Workload,
    trace: &Trace,
    what: &str,
    attempt: impl Fn() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let (_, mut rng) = workload.client(App::Fanout);
    while now() < workload.produce_until {
        match workload.by_deadline(attempt()).await {
            Some(Ok(value)) => return Some(value),
            Some(Err(error)) => trace.record(now(), format!("fanout {what}: {error}")),
            None => return None,
        }
        pause(&mut rng).await;
    }
    None
}
