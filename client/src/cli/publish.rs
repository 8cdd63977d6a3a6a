//! `raftmq publish`: pipelined publishing through the `Producer`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use futures::stream::{FuturesOrdered, StreamExt};
use raftmq_client::{Client, ClientError, Message, Position, ProducerOptions, Properties, Routed};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Confirms held before waiting for the oldest: keeps memory bounded when
/// publishing millions of messages.
const CONFIRMS_PENDING_MAX: usize = 65_536;
/// Payload size for `--count` without `--size`.
const SIZE_DEFAULT: usize = 100;

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Topic to publish to (or --exchange).
    #[arg(required_unless_present = "exchange")]
    topic: Option<String>,
    /// Publish through this exchange instead of to a topic ("" is the
    /// default exchange), in batches of --batch-max, one after another.
    #[arg(long, conflicts_with = "topic")]
    exchange: Option<String>,
    /// The routing key for --exchange: it chooses topics (--key still
    /// chooses the partition within each).
    #[arg(long, requires = "exchange", default_value = "")]
    routing_key: String,
    /// With --exchange: a message that routes nowhere is returned, and the
    /// command fails, rather than being dropped.
    #[arg(long, requires = "exchange")]
    mandatory: bool,
    /// Key for every message (same key, same partition, order kept).
    #[arg(long)]
    key: Option<String>,
    /// A header for every message, NAME=VALUE; repeat for more.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    properties: PropertyArgs,
    /// Publish N generated messages instead of reading stdin.
    #[arg(long)]
    count: Option<u64>,
    /// Payload bytes of generated messages: the message number, padded
    /// with '.' (default 100).
    #[arg(long, requires = "count")]
    size: Option<usize>,
    /// Most unanswered requests in flight.
    #[arg(long, default_value_t = ProducerOptions::default().window)]
    window: usize,
    /// Most messages per request.
    #[arg(long, default_value_t = ProducerOptions::default().batch_max)]
    batch_max: usize,
    /// Print a JSON summary instead of a line of text.
    #[arg(long)]
    json: bool,
}

/// Properties for every message (AMQP's basic properties), delivered as
/// published.
#[derive(Debug, Args)]
struct PropertyArgs {
    #[arg(long)]
    content_type: Option<String>,
    #[arg(long)]
    content_encoding: Option<String>,
    /// Matches a reply to its request.
    #[arg(long)]
    correlation_id: Option<String>,
    /// The topic a reply should go to.
    #[arg(long)]
    reply_to: Option<String>,
    #[arg(long)]
    message_id: Option<String>,
    /// The publisher's own time, ms since the Unix epoch.
    #[arg(long)]
    timestamp_ms: Option<u64>,
    /// The message's type name, for the application.
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(long)]
    app_id: Option<String>,
    /// Expires this many ms after it is published (or becomes due, if
    /// delayed): never delivered after.
    #[arg(long)]
    ttl_ms: Option<u32>,
    /// Not delivered before this many ms after it is published.
    #[arg(long)]
    delay_ms: Option<u32>,
    /// Not delivered before this time, ms since the Unix epoch (the
    /// leader's clock).
    #[arg(long)]
    not_before_ms: Option<u64>,
    /// Higher goes first, up to the topic's --max-priority.
    #[arg(long)]
    priority: Option<u32>,
}

impl PropertyArgs {
    fn properties(&self) -> Properties {
        Properties {
            content_type: self.content_type.clone(),
            content_encoding: self.content_encoding.clone(),
            correlation_id: self.correlation_id.clone(),
            reply_to: self.reply_to.clone(),
            message_id: self.message_id.clone(),
            timestamp_ms: self.timestamp_ms,
            r#type: self.kind.clone(),
            app_id: self.app_id.clone(),
            ttl_ms: self.ttl_ms,
            delay_ms: self.delay_ms,
            not_before_ms: self.not_before_ms,
            priority: self.priority,
        }
    }
}

/// `NAME=VALUE`.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// What became of the published messages.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    confirmed: u64,
    failed: u64,
    first_error: Option<ClientError>,
}

impl Tally {
    fn record(&mut self, outcome: Result<Position, ClientError>) {
        match outcome {
            Ok(_) => self.confirmed += 1,
            Err(error) => {
                self.failed += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }
}

pub(crate) async fn run(client: &Client, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let Some(topic) = &args.topic else {
        return through_exchange(client, &args).await;
    };
    let options = ProducerOptions {
        window: args.window,
        batch_max: args.batch_max,
        ..Default::default()
    };
    let producer = client.producer_with(topic, options)?;
    let started = Instant::now();
    let mut confirms = FuturesOrdered::new();
    let mut tally = Tally::default();
    let mut source = Source::new(&args);
    while let Some(payload) = source.next().await? {
        confirms.push_back(producer.send(args.message(payload)).await?);
        tally.sent += 1;
        if confirms.len() >= CONFIRMS_PENDING_MAX {
            if let Some(outcome) = confirms.next().await {
                tally.record(outcome);
            }
        }
    }
    producer.close().await?;
    while let Some(outcome) = confirms.next().await {
        tally.record(outcome);
    }
    report(&args, &tally, started)?;
    match tally.first_error {
        None => Ok(ExitCode::SUCCESS),
        Some(error) => anyhow::bail!(
            "{} of {} messages not confirmed; first error: {error}",
            tally.failed,
            tally.sent
        ),
    }
}

impl PublishArgs {
    /// A message with this command's key, headers and properties.
    fn message(&self, payload: Vec<u8>) -> Message {
        let mut message = self
            .headers
            .iter()
            .fold(Message::new(payload), |message, (name, value)| {
                message.with_header(name.clone(), value.clone())
            })
            .with_properties(self.properties.properties());
        if let Some(key) = &self.key {
            message = message.with_key(key.clone());
        }
        message
    }
}

/// `--exchange`: batches published one after another, each confirmed
/// with where its messages went.
async fn through_exchange(client: &Client, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let exchange = args.exchange.as_deref().unwrap_or_default();
    let started = Instant::now();
    let (mut routed, mut returned, mut dropped) = (0u64, 0u64, 0u64);
    let mut source = Source::new(args);
    let mut batch = Vec::new();
    loop {
        let payload = source.next().await?;
        let done = payload.is_none();
        batch.extend(payload.map(|payload| args.message(payload)));
        if batch.len() < args.batch_max.max(1) && !done {
            continue;
        }
        if !batch.is_empty() {
            let messages = std::mem::take(&mut batch);
            let outcomes = client
                .publish_to_exchange(exchange, &args.routing_key, messages, args.mandatory)
                .await?;
            for outcome in outcomes {
                match outcome {
                    Routed::To(_) => routed += 1,
                    Routed::Returned => returned += 1,
                    Routed::Dropped => dropped += 1,
                }
            }
        }
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    if args.json {
        let summary = json!({
            "exchange": exchange,
            "routing_key": args.routing_key,
            "routed": routed,
            "returned": returned,
            "dropped": dropped,
            "elapsed_ms": elapsed.as_millis() as u64,
        });
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{routed} messages routed, {returned} returned, {dropped} dropped unroutable");
    }
    if returned > 0 {
        anyhow::bail!("{returned} messages were returned: exchange {exchange:?} routes routing key {:?} to no topic", args.routing_key);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(args: &PublishArgs, tally: &Tally, started: Instant) -> anyhow::Result<()> {
    let elapsed = started.elapsed();
    if args.json {
        let summary = json!({
            "topic": args.topic,
            "sent": tally.sent,
            "confirmed": tally.confirmed,
            "failed": tally.failed,
            "elapsed_ms": elapsed.as_millis() as u64,
            "messages_per_sec": tally.confirmed as f64 / elapsed.as_secs_f64().max(1e-9),
            "first_error": tally.first_error.as_ref().map(ToString::to_string),
        });
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{} messages confirmed", tally.confirmed);
    }
    Ok(())
}

/// Where payloads come from: a counter, or stdin lines.
enum Source {
    Generated { next: u64, count: u64, size: usize },
    Stdin(tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>),
}

impl Source {
    fn new(args: &PublishArgs) -> Source {
        match args.count {
            Some(count) => Source::Generated {
                next: 0,
                count,
                size: args.size.unwrap_or(SIZE_DEFAULT),
            },
            None => Source::Stdin(tokio::io::BufReader::new(tokio::io::stdin()).lines()),
        }
    }

    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Source::Generated { next, count, size } => {
                if *next >= *count {
                    return Ok(None);
                }
                let payload = generated_payload(*next, *size);
                *next += 1;
                Ok(Some(payload))
            }
            Source::Stdin(lines) => Ok(lines.next_line().await?.map(String::into_bytes)),
        }
    }
}

/// The message number in decimal, padded with '.' to `size` bytes (cut if
/// shorter), so that consumers can tell generated messages apart.
fn generated_payload(number: u64, size: usize) -> Vec<u8> {
    let mut payload = number.to_string().into_bytes();
    payload.resize(size, b'.');
    payload
}

#[cfg(test)]
mod tests {
    use super::generated_payload;

    #[test]
    fn generated_payloads_have_the_requested_size() {
        assert_eq!(generated_payload(42, 6), b"42....");
        assert_eq!(generated_payload(12345, 3), b"123");
        assert!(generated_payload(7, 0).is_empty());
    }
}
