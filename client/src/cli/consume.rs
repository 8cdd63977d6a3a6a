//! `raftmq consume`: print a subscription's messages and acknowledge them.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use raftmq_client::{
    Client, ClientError, Consumer, Delivery, NackOptions, Position, Properties, StartAt,
    SubscribeOptions, SubscriptionMode,
};
use serde_json::json;

/// How long to wait for another message before acking what was printed:
/// acks go out in batches under load, and promptly when traffic pauses.
const ACK_LINGER: Duration = Duration::from_millis(50);
/// Most positions held before acking. Acking at half the prefetch keeps the
/// server sending: it stops at `prefetch` unacknowledged messages.
const ACK_BATCH_MAX: usize = 1000;

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic to consume from.
    topic: String,
    /// Subscription name; created at the earliest message if missing.
    #[arg(long)]
    subscription: String,
    /// Most unacknowledged messages held at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    prefetch: u32,
    /// Stop after N messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop when no message arrives for T seconds (default: wait until
    /// Ctrl-C, or until --count is reached).
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// Print one JSON object per message (partition, offset, key, payload,
    /// attempts, redelivered).
    #[arg(long)]
    json: bool,
    /// How consumers share the subscription, when this creates it.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Redeliver a message unacked this long (when this creates the
    /// subscription).
    #[arg(long)]
    ack_timeout_ms: Option<u64>,
    /// Failures before a message goes to --dead-letter-topic.
    #[arg(long, default_value_t = 0)]
    max_deliveries: u32,
    /// An existing topic for rejected and over-delivered messages.
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// Or an existing exchange that routes them (x-dead-letter-exchange).
    #[arg(long, conflicts_with = "dead_letter_topic")]
    dead_letter_exchange: Option<String>,
    /// The routing key dead letters go through --dead-letter-exchange with
    /// (default: the topic's name).
    #[arg(long, requires = "dead_letter_exchange")]
    dead_letter_routing_key: Option<String>,
    /// Start a new subscription after the messages published so far.
    #[arg(long, conflicts_with_all = ["from_offset", "from_time_ms"])]
    from_latest: bool,
    /// Start a new subscription at this offset in every partition (a
    /// replay of what is retained).
    #[arg(long, conflicts_with = "from_time_ms")]
    from_offset: Option<u64>,
    /// Start a new subscription at the first message published at or after
    /// this time, ms since the Unix epoch.
    #[arg(long)]
    from_time_ms: Option<u64>,
    /// What to do with each printed message.
    #[arg(long, value_enum, default_value = "ack")]
    settle: Settle,
    /// Exit with an error when no leader was reachable for this long
    /// (default: keep trying through an outage of any length).
    #[arg(long)]
    give_up_after_secs: Option<u64>,
}

/// `--mode`: the subscription modes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Exclusive,
    Failover,
    Shared,
    KeyShared,
}

/// `--settle`: acknowledge, return for redelivery, or reject to the
/// dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Settle {
    Ack,
    Nack,
    Reject,
}

/// Why waiting for the next message ended.
enum Waited {
    Message(Option<Result<Delivery, ClientError>>),
    TimedOut,
}

pub(crate) async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let options = SubscribeOptions {
        prefetch: args.prefetch,
        mode: args.mode.map(|mode| match mode {
            Mode::Exclusive => SubscriptionMode::Exclusive,
            Mode::Failover => SubscriptionMode::Failover,
            Mode::Shared => SubscriptionMode::Shared,
            Mode::KeyShared => SubscriptionMode::KeyShared,
        }),
        ack_timeout: args.ack_timeout_ms.map(Duration::from_millis),
        max_deliveries: args.max_deliveries,
        dead_letter_topic: args.dead_letter_topic.clone(),
        dead_letter_exchange: args.dead_letter_exchange.clone(),
        dead_letter_routing_key: args.dead_letter_routing_key.clone(),
        start: match (args.from_latest, args.from_offset, args.from_time_ms) {
            (true, _, _) => StartAt::Latest,
            (_, Some(offset), _) => StartAt::Offset(offset),
            (_, _, Some(at_ms)) => StartAt::Time(at_ms),
            _ => StartAt::Earliest,
        },
        give_up_after: args.give_up_after_secs.map(Duration::from_secs),
    };
    let mut consumer = client
        .subscribe_with(&args.topic, &args.subscription, options)
        .await?;
    let idle = args.timeout_secs.map(Duration::from_secs);
    let ack_batch = (args.prefetch as usize / 2).clamp(1, ACK_BATCH_MAX);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut unacked: Vec<Position> = Vec::new();
    let mut printed: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while args.count.is_none_or(|count| printed < count) {
        let lingering = !unacked.is_empty();
        let wait = if lingering { Some(ACK_LINGER) } else { idle };
        let waited = tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            waited = next_within(&mut consumer, wait) => waited,
        };
        let delivery = match waited {
            Waited::TimedOut if lingering => {
                acknowledge(&consumer, &mut out, &mut unacked, args.settle).await?;
                continue;
            }
            Waited::TimedOut | Waited::Message(None) => break,
            Waited::Message(Some(delivery)) => delivery?,
        };
        print(&mut out, &delivery, args.json)?;
        unacked.push(delivery.position());
        printed += 1;
        if unacked.len() >= ack_batch {
            acknowledge(&consumer, &mut out, &mut unacked, args.settle).await?;
        }
    }
    acknowledge(&consumer, &mut out, &mut unacked, args.settle).await?;
    let settled = match args.settle {
        Settle::Ack => "acknowledged",
        Settle::Nack => "returned for redelivery",
        Settle::Reject => "rejected",
    };
    eprintln!("{printed} messages consumed and {settled}");
    if consumer.gaps() > 0 {
        eprintln!(
            "warning: {} deliveries missing from the sequence",
            consumer.gaps()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn next_within(consumer: &mut Consumer, wait: Option<Duration>) -> Waited {
    match wait {
        None => Waited::Message(consumer.next().await),
        Some(wait) => match tokio::time::timeout(wait, consumer.next()).await {
            Ok(message) => Waited::Message(message),
            Err(_) => Waited::TimedOut,
        },
    }
}

/// Acks only what has been written out: flush stdout first. A settle that
/// found no leader is not fatal: the messages stay unacknowledged and come
/// back, marked redelivered, once the cluster is back.
async fn acknowledge(
    consumer: &Consumer,
    out: &mut impl Write,
    unacked: &mut Vec<Position>,
    settle: Settle,
) -> anyhow::Result<()> {
    if unacked.is_empty() {
        return Ok(());
    }
    out.flush()?;
    let settled = match settle {
        Settle::Ack => consumer.ack(unacked.iter()).await.map(drop),
        Settle::Nack => consumer.nack(unacked.iter()).await,
        Settle::Reject => {
            let reject = NackOptions {
                reject: true,
                ..Default::default()
            };
            consumer.nack_with(unacked.iter(), reject).await
        }
    };
    match settled {
        Ok(()) => {}
        Err(error @ ClientError::NoLeader { .. }) => {
            eprintln!(
                "warning: {} messages not settled ({error}); they will be delivered again",
                unacked.len()
            );
        }
        Err(error) => return Err(error.into()),
    }
    unacked.clear();
    Ok(())
}

fn print(out: &mut impl Write, delivery: &Delivery, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let line = json!({
            "partition": delivery.partition,
            "offset": delivery.offset,
            "key": delivery.key.as_ref().map(|key| String::from_utf8_lossy(key)),
            "payload": String::from_utf8_lossy(&delivery.payload),
            "headers": delivery.headers,
            "properties": delivery.properties.as_deref().map(properties_json),
            "publish_time_ms": delivery.publish_time_ms,
            "attempts": delivery.attempts,
            "redelivered": delivery.redelivered,
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", String::from_utf8_lossy(&delivery.payload))?;
    }
    Ok(())
}

/// The properties that are set, by their AMQP names.
fn properties_json(properties: &Properties) -> serde_json::Value {
    let text = [
        ("content_type", &properties.content_type),
        ("content_encoding", &properties.content_encoding),
        ("correlation_id", &properties.correlation_id),
        ("reply_to", &properties.reply_to),
        ("message_id", &properties.message_id),
        ("type", &properties.r#type),
        ("app_id", &properties.app_id),
    ];
    let mut set: serde_json::Map<String, serde_json::Value> = text
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.clone()?.into())))
        .collect();
    let numbers = [
        ("timestamp_ms", properties.timestamp_ms),
        ("ttl_ms", properties.ttl_ms.map(u64::from)),
        ("delay_ms", properties.delay_ms.map(u64::from)),
        ("not_before_ms", properties.not_before_ms),
        ("priority", properties.priority.map(u64::from)),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            set.insert(name.into(), value.into());
        }
    }
    set.into()
}
