//! `raftmq-check`: the client side of a chaos run.
//!
//! Publishes keyed messages carrying per-key sequence numbers through a
//! `Producer` (with confirms), consumes them with acks, and at the end says
//! whether every confirmed message came back (`lost` must be 0) and whether
//! each key's messages came back in order (`order_violations` must be 0).
//! Duplicates are allowed (at-least-once) and counted. It also measures the
//! longest stretch without a single confirm: what a fault costs in
//! availability.
//!
//! Everything is bounded: publishing stops after `--duration-secs`,
//! `--count`, or SIGINT/SIGTERM (that is how `deploy/chaos.sh` ends it after
//! its last fault), and the drain that follows stops after `--drain-secs`.
//! Exit status: 0 when nothing was lost or reordered and something was
//! confirmed, 1 otherwise.

mod ledger;
#[path = "../../cli/security.rs"]
mod security;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use raftmq_client::{Client, ClientOptions, Confirm, Consumer, Delivery, Message, Position};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::ledger::{Ledger, Seen, Totals};

/// Header carrying the per-key sequence number.
const SEQUENCE_HEADER: &str = "seq";
/// Publishing is paced in ticks of this length.
const TICK: Duration = Duration::from_millis(10);
/// Confirms waiting to be awaited; when full, publishing waits (the
/// producer's window bounds them anyway).
const CONFIRMS_QUEUED_MAX: usize = 65_536;
/// Deliveries acknowledged in one request, and the longest an ack waits.
const ACK_BATCH_MAX: usize = 256;
const ACK_DELAY_MAX: Duration = Duration::from_millis(100);
/// Times the consumer may be re-created after its stream gave up.
const RESUBSCRIBES_MAX: u32 = 100;
/// How often progress goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "raftmq-check",
    version,
    about = "Publish with confirms and consume with acks; report lost, duplicated and reordered messages"
)]
struct Args {
    /// Broker addresses (host:port), comma-separated.
    #[arg(
        long,
        env = "RAFTMQ_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    servers: Vec<String>,
    /// Topic to use [default: check-<unix time>, a fresh one per run].
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    #[arg(long, default_value = "checker")]
    subscription: String,
    /// Distinct keys; messages go round-robin over them.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keys: u32,
    /// Messages per second to publish.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: u32,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    size: u64,
    /// Stop publishing after this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_secs: u64,
    /// Stop publishing after this many messages.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// After publishing stops: how long to wait for outstanding confirms
    /// and for every confirmed message to be delivered.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    drain_secs: u64,
    /// Unacknowledged deliveries the consumer may hold.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    prefetch: u32,
    /// Seconds one client operation keeps looking for the leader.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    deadline_secs: u64,
    #[command(flatten)]
    security: security::Security,
}

/// State shared by the publisher, the confirm collector and the consumer.
#[derive(Debug)]
struct Shared {
    started: Instant,
    ledger: Ledger,
    availability: Availability,
    ack_failures: u64,
    resubscribes: u32,
    /// Stream sequence numbers the server skipped: retired consumers' sum,
    /// and the active consumer's count.
    sequence_gaps_retired: u64,
    sequence_gaps_active: u64,
    /// Where each key's newest first delivery was, to tell a late
    /// redelivery (newer offset came first) from a log stored out of order.
    newest: BTreeMap<String, (u64, Position)>,
    foreign: u64,
    first_error: Option<String>,
}

/// The longest time between two successful confirms while publishing.
#[derive(Debug)]
struct Availability {
    last_confirm: Instant,
    longest: Duration,
    /// When the longest gap ended, since the start.
    longest_ended: Duration,
}

impl Availability {
    fn confirmed(&mut self, now: Instant, started: Instant) {
        let gap = now.saturating_duration_since(self.last_confirm);
        if gap > self.longest {
            self.longest = gap;
            self.longest_ended = now.saturating_duration_since(started);
        }
        self.last_confirm = now;
    }
}

type State = Arc<Mutex<Shared>>;

fn lock(state: &State) -> MutexGuard<'_, Shared> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The final report: one JSON line.
#[derive(Debug, Serialize)]
struct Report {
    topic: String,
    verdict: &'static str,
    #[serde(flatten)]
    totals: Totals,
    longest_unavailable_ms: u128,
    longest_unavailable_ended_at_s: f64,
    drained: bool,
    ack_failures: u64,
    resubscribes: u32,
    sequence_gaps: u64,
    foreign_deliveries: u64,
    elapsed_s: f64,
    first_error: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTMQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let topic = args.topic.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!("check-{}", now.as_secs())
    });
    let mut options = ClientOptions {
        retry_deadline: Duration::from_secs(args.deadline_secs),
        ..Default::default()
    };
    args.security.apply(&mut options)?;
    let client = Client::connect_with(args.servers.clone(), options)?;
    client
        .create_topic(&topic, args.partitions)
        .await
        .with_context(|| format!("declaring topic {topic}"))?;
    let consumer = client
        .subscribe(&topic, &args.subscription, args.prefetch)
        .await
        .context("subscribing")?;
    let started = Instant::now();
    let state: State = Arc::new(Mutex::new(Shared {
        started,
        ledger: Ledger::default(),
        availability: Availability {
            last_confirm: started,
            longest: Duration::ZERO,
            longest_ended: Duration::ZERO,
        },
        ack_failures: 0,
        resubscribes: 0,
        sequence_gaps_retired: 0,
        sequence_gaps_active: 0,
        newest: BTreeMap::new(),
        foreign: 0,
        first_error: None,
    }));
    eprintln!(
        "raftmq-check: topic {topic}, {} keys, {} msg/s for at most {} s (SIGINT/SIGTERM stops publishing)",
        args.keys, args.rate, args.duration_secs
    );

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop.clone()));
    let (drain_tx, drain_rx) = watch::channel(None::<Instant>);
    let consuming = tokio::spawn(consume(
        client.clone(),
        consumer,
        args.clone(),
        topic.clone(),
        state.clone(),
        drain_rx,
    ));
    let progress = tokio::spawn(report_progress(state.clone()));

    let drain = Duration::from_secs(args.drain_secs);
    publish(&client, &args, &topic, &state, stopped, drain).await;
    let drain_deadline = Instant::now() + drain;
    eprintln!("raftmq-check: publishing stopped; draining for at most {drain:?}");
    let _ = drain_tx.send(Some(drain_deadline));
    let drained = match consuming.await {
        Ok(drained) => drained,
        Err(error) => {
            eprintln!("raftmq-check: consumer task failed: {error}");
            false
        }
    };
    progress.abort();

    let shared = lock(&state);
    let totals = shared.ledger.totals();
    let pass = totals.lost == 0 && totals.order_violations == 0 && totals.confirmed > 0;
    let report = Report {
        topic,
        verdict: if pass { "pass" } else { "fail" },
        totals,
        longest_unavailable_ms: shared.availability.longest.as_millis(),
        longest_unavailable_ended_at_s: shared.availability.longest_ended.as_secs_f64(),
        drained,
        ack_failures: shared.ack_failures,
        resubscribes: shared.resubscribes,
        sequence_gaps: shared.sequence_gaps_retired + shared.sequence_gaps_active,
        foreign_deliveries: shared.foreign,
        elapsed_s: started.elapsed().as_secs_f64(),
        first_error: shared.first_error.clone(),
    };
    print_summary(&report);
    println!("{}", serde_json::to_string(&report)?);
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn stop_on_signal(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    let _ = stop.send(true);
}

/// Publishes at `--rate` until stopped, then waits (at most `drain`) for
/// the outstanding confirms.
async fn publish(
    client: &Client,
    args: &Args,
    topic: &str,
    state: &State,
    mut stopped: watch::Receiver<bool>,
    drain: Duration,
) {
    let producer = client.producer(topic);
    let (confirms, queued) = mpsc::channel(CONFIRMS_QUEUED_MAX);
    let collector = tokio::spawn(collect_confirms(queued, state.clone()));
    let padding = "x".repeat(args.size as usize);
    let mut sequences = vec![0u64; args.keys as usize];
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_tick = f64::from(args.rate) * TICK.as_secs_f64();
    let mut allowance = 0.0;
    let ends = Instant::now() + Duration::from_secs(args.duration_secs);
    let mut sent = 0u64;
    'publishing: while sent < args.count && Instant::now() < ends && !*stopped.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => break,
        }
        allowance += per_tick;
        while allowance >= 1.0 && sent < args.count {
            allowance -= 1.0;
            let index = (sent % u64::from(args.keys)) as usize;
            sequences[index] += 1;
            let key = format!("k{index}");
            let message = Message::new(padding.clone())
                .with_key(key.clone())
                .with_header(SEQUENCE_HEADER, sequences[index].to_string());
            let confirm = tokio::select! {
                confirm = producer.send(message) => confirm,
                _ = stopped.changed() => break 'publishing,
            };
            let Ok(confirm) = confirm else {
                record_error(state, "the producer closed".to_string());
                break 'publishing;
            };
            lock(state).ledger.sent();
            sent += 1;
            if confirms
                .send((key, sequences[index], confirm))
                .await
                .is_err()
            {
                break 'publishing;
            }
        }
    }
    drop(confirms);
    if tokio::time::timeout(drain, producer.close()).await.is_err() {
        record_error(state, format!("confirms still outstanding after {drain:?}"));
    }
    let _ = tokio::time::timeout(drain, collector).await;
}

/// Awaits confirms in send order and books their outcomes.
async fn collect_confirms(mut queued: mpsc::Receiver<(String, u64, Confirm)>, state: State) {
    while let Some((key, sequence, confirm)) = queued.recv().await {
        let outcome = confirm.await;
        let mut shared = lock(&state);
        match outcome {
            Ok(_) => {
                shared.ledger.confirmed(&key, sequence);
                let started = shared.started;
                shared.availability.confirmed(Instant::now(), started);
            }
            Err(error) => {
                shared.ledger.unconfirmed();
                shared
                    .first_error
                    .get_or_insert(format!("publish: {error}"));
            }
        }
    }
}

/// Consumes and acks until, once publishing has stopped, every confirmed
/// message was delivered (returns true) or the drain deadline passed.
///
/// `Consumer::next` is awaited to completion in its own task, never raced
/// against a timer: dropping it mid-recovery would abandon a stream the
/// leader has already attached (and handed messages to). This loop only
/// waits on the channel, which is safe to time out.
async fn consume(
    client: Client,
    consumer: Consumer,
    args: Args,
    topic: String,
    state: State,
    drain: watch::Receiver<Option<Instant>>,
) -> bool {
    let (deliveries, mut received) = mpsc::channel(args.prefetch as usize);
    let reader = tokio::spawn(read(
        client.clone(),
        consumer,
        args.clone(),
        topic.clone(),
        state.clone(),
        deliveries,
    ));
    let mut acks: Vec<Position> = Vec::new();
    let mut ack_due = Instant::now() + ACK_DELAY_MAX;
    let drained = loop {
        let drain_deadline = *drain.borrow();
        if let Some(deadline) = drain_deadline {
            let missing = lock(&state).ledger.missing();
            if missing == 0 {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
        }
        if acks.len() >= ACK_BATCH_MAX || (!acks.is_empty() && Instant::now() >= ack_due) {
            flush_acks(&client, &args, &topic, &mut acks, &state).await;
        }
        match tokio::time::timeout(ACK_DELAY_MAX, received.recv()).await {
            Err(_) => {}
            Ok(Some(delivery)) => {
                if acks.is_empty() {
                    ack_due = Instant::now() + ACK_DELAY_MAX;
                }
                acks.push(Delivery::position(&delivery));
                book_delivery(&state, &delivery);
            }
            // The reader gave up (re-subscribe budget spent): wait out the
            // drain deadline, which decides.
            Ok(None) => tokio::time::sleep(ACK_DELAY_MAX).await,
        }
    };
    flush_acks(&client, &args, &topic, &mut acks, &state).await;
    reader.abort();
    drained
}

/// Owns the consumer: forwards deliveries, and re-subscribes (a bounded
/// number of times) when the consumer gives up.
async fn read(
    client: Client,
    consumer: Consumer,
    args: Args,
    topic: String,
    state: State,
    deliveries: mpsc::Sender<Delivery>,
) {
    let mut consumer = Some(consumer);
    for _ in 0..=RESUBSCRIBES_MAX {
        let Some(active) = consumer.as_mut() else {
            lock(&state).resubscribes += 1;
            match client
                .subscribe(&topic, &args.subscription, args.prefetch)
                .await
            {
                Ok(fresh) => consumer = Some(fresh),
                Err(error) => {
                    record_error(&state, format!("subscribe: {error}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        loop {
            match active.next().await {
                Some(Ok(delivery)) => {
                    lock(&state).sequence_gaps_active = active.gaps();
                    if deliveries.send(delivery).await.is_err() {
                        return;
                    }
                }
                Some(Err(error)) => {
                    record_error(&state, format!("consume: {error}"));
                    break;
                }
                None => break,
            }
        }
        if let Some(retired) = consumer.take() {
            let mut shared = lock(&state);
            shared.sequence_gaps_retired += retired.gaps();
            shared.sequence_gaps_active = 0;
        }
    }
    record_error(&state, "consume: re-subscribe budget spent".to_string());
}

/// Acks what was booked; a failed ack only means redeliveries later.
async fn flush_acks(
    client: &Client,
    args: &Args,
    topic: &str,
    acks: &mut Vec<Position>,
    state: &State,
) {
    if acks.is_empty() {
        return;
    }
    if let Err(error) = client.ack(topic, &args.subscription, acks.iter()).await {
        let mut shared = lock(state);
        shared.ack_failures += 1;
        shared.first_error.get_or_insert(format!("ack: {error}"));
    }
    acks.clear();
}

fn book_delivery(state: &State, delivery: &Delivery) {
    let key = delivery
        .key
        .as_ref()
        .and_then(|key| std::str::from_utf8(key).ok());
    let sequence = delivery
        .headers
        .get(SEQUENCE_HEADER)
        .and_then(|sequence| sequence.parse::<u64>().ok());
    let mut shared = lock(state);
    let (Some(key), Some(sequence)) = (key, sequence) else {
        shared.foreign += 1;
        return;
    };
    let position = delivery.position();
    match shared.ledger.delivered(key, sequence) {
        Seen::New => {
            shared.newest.insert(key.to_string(), (sequence, position));
        }
        Seen::OutOfOrder => {
            let (newest, at) = shared
                .newest
                .get(key)
                .copied()
                .unwrap_or((0, Position::new(0, 0)));
            eprintln!(
                "raftmq-check: ORDER VIOLATION key {key} sequence {sequence} at {}/{} (attempts {}) after sequence {newest} at {}/{}",
                position.partition, position.offset, delivery.attempts, at.partition, at.offset
            );
        }
        Seen::Duplicate => {}
    }
}

fn record_error(state: &State, error: String) {
    eprintln!("raftmq-check: {error}");
    lock(state).first_error.get_or_insert(error);
}

async fn report_progress(state: State) {
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let shared = lock(&state);
        let totals = shared.ledger.totals();
        eprintln!(
            "raftmq-check: t={:>4}s sent={} confirmed={} unconfirmed={} delivered={} duplicates={} missing={} order_violations={}",
            shared.started.elapsed().as_secs(),
            totals.sent,
            totals.confirmed,
            totals.unconfirmed,
            totals.delivered,
            totals.duplicates,
            totals.lost,
            totals.order_violations
        );
    }
}

fn print_summary(report: &Report) {
    let totals = &report.totals;
    println!(
        "raftmq-check summary ({}, {:.0} s)",
        report.topic, report.elapsed_s
    );
    println!("  messages sent             {}", totals.sent);
    println!("  messages confirmed        {}", totals.confirmed);
    println!("  not confirmed (unknown)   {}", totals.unconfirmed);
    println!("  messages delivered        {}", totals.delivered);
    println!("  lost (must be 0)          {}", totals.lost);
    println!("  duplicates                {}", totals.duplicates);
    println!("  order violations (must 0) {}", totals.order_violations);
    println!(
        "  delivered, not confirmed  {}",
        totals.delivered_unconfirmed
    );
    println!(
        "  longest unavailability    {} ms (ended at {:.1} s)",
        report.longest_unavailable_ms, report.longest_unavailable_ended_at_s
    );
    println!(
        "  drained: {}, ack failures: {}, resubscribes: {}, stream sequence gaps: {}",
        report.drained, report.ack_failures, report.resubscribes, report.sequence_gaps
    );
    if let Some(error) = &report.first_error {
        println!("  first error: {error}");
    }
    println!("  verdict: {}", report.verdict.to_uppercase());
}
