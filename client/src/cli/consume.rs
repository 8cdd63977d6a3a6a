//! `raftmq consume`: print a subscription's messages and acknowledge them.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use raftmq_client::{Client, ClientError, Consumer, Delivery, Position};
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
}

/// Why waiting for the next message ended.
enum Waited {
    Message(Option<Result<Delivery, ClientError>>),
    TimedOut,
}

pub(crate) async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let mut consumer = client
        .subscribe(&args.topic, &args.subscription, args.prefetch)
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
                acknowledge(&consumer, &mut out, &mut unacked).await?;
                continue;
            }
            Waited::TimedOut | Waited::Message(None) => break,
            Waited::Message(Some(delivery)) => delivery?,
        };
        print(&mut out, &delivery, args.json)?;
        unacked.push(delivery.position());
        printed += 1;
        if unacked.len() >= ack_batch {
            acknowledge(&consumer, &mut out, &mut unacked).await?;
        }
    }
    acknowledge(&consumer, &mut out, &mut unacked).await?;
    eprintln!("{printed} messages consumed and acknowledged");
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

/// Acks only what has been written out: flush stdout first.
async fn acknowledge(
    consumer: &Consumer,
    out: &mut impl Write,
    unacked: &mut Vec<Position>,
) -> anyhow::Result<()> {
    if unacked.is_empty() {
        return Ok(());
    }
    out.flush()?;
    consumer.ack(unacked.iter()).await?;
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
            "attempts": delivery.attempts,
            "redelivered": delivery.redelivered,
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", String::from_utf8_lossy(&delivery.payload))?;
    }
    Ok(())
}
