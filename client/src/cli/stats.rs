//! `raftmq stats [TOPIC]`: depths, counts and rates of topics and their
//! subscriptions. Rates are the growth of the counts between two samples
//! `--interval-secs` apart, both taken from the same node.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use raftmq_client::{Client, SubscriptionStats, TopicStats};
use serde::Serialize;

use super::table;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this topic.
    topic: Option<String>,
    /// Seconds between the two samples a rate is measured over.
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    interval_secs: f64,
    /// Keep printing, once per interval, until interrupted (or --count).
    #[arg(long)]
    watch: bool,
    /// With --watch: stop after this many reports.
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print one JSON document per report instead of a table.
    #[arg(long)]
    json: bool,
}

fn interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.1..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0.1 to 3600"
        )),
    }
}

/// One report: the later sample, with rates against the earlier.
#[derive(Debug, Serialize, PartialEq)]
struct Report {
    interval_secs: f64,
    topics: Vec<TopicReport>,
}

#[derive(Debug, Serialize, PartialEq)]
struct TopicReport {
    name: String,
    partitions: u32,
    retained: u64,
    retained_bytes: u64,
    published: u64,
    published_per_sec: f64,
    subscriptions: Vec<SubscriptionReport>,
}

#[derive(Debug, Serialize, PartialEq)]
struct SubscriptionReport {
    name: String,
    depth: u64,
    in_flight: u64,
    consumers: u64,
    delivered_per_sec: f64,
    acked_per_sec: f64,
    nacked: u64,
    dead_lettered: u64,
    expired: u64,
}

pub async fn run(client: &Client, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let interval = Duration::from_secs_f64(args.interval_secs);
    let topic = args.topic.as_deref();
    let mut before = (Instant::now(), client.topic_stats(topic).await?);
    let mut reports = 0;
    loop {
        tokio::time::sleep(interval).await;
        let after = (Instant::now(), client.topic_stats(topic).await?);
        let seconds = after.0.duration_since(before.0).as_secs_f64();
        let report = report(&before.1, after.1.clone(), seconds);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print(&report);
        }
        reports += 1;
        if !args.watch || args.count.is_some_and(|count| reports >= count) {
            return Ok(ExitCode::SUCCESS);
        }
        if !args.json {
            println!();
        }
        before = after;
    }
}

/// Growth per second of a count from `before` (absent: nothing to
/// compare) to `after`; a count that went back (another node answered, or
/// the topic was made again) shows no rate rather than a negative one.
fn per_sec(before: Option<u64>, after: u64, seconds: f64) -> f64 {
    match before {
        Some(before) if after >= before && seconds > 0.0 => {
            ((after - before) as f64 / seconds * 10.0).round() / 10.0
        }
        _ => 0.0,
    }
}

fn report(before: &[TopicStats], after: Vec<TopicStats>, seconds: f64) -> Report {
    let topics = after
        .into_iter()
        .map(|topic| {
            let was = before.iter().find(|t| t.name == topic.name);
            let sub_was = |name: &str| -> Option<&SubscriptionStats> {
                was?.subscriptions.iter().find(|s| s.name == name)
            };
            let subscriptions = topic
                .subscriptions
                .iter()
                .map(|s| SubscriptionReport {
                    name: s.name.clone(),
                    depth: s.depth,
                    in_flight: s.in_flight,
                    consumers: s.consumers,
                    delivered_per_sec: per_sec(
                        sub_was(&s.name).map(|b| b.delivered),
                        s.delivered,
                        seconds,
                    ),
                    acked_per_sec: per_sec(sub_was(&s.name).map(|b| b.acked), s.acked, seconds),
                    nacked: s.nacked,
                    dead_lettered: s.dead_lettered,
                    expired: s.expired,
                })
                .collect();
            TopicReport {
                published_per_sec: per_sec(was.map(|t| t.published), topic.published, seconds),
                name: topic.name,
                partitions: topic.partitions,
                retained: topic.retained,
                retained_bytes: topic.retained_bytes,
                published: topic.published,
                subscriptions,
            }
        })
        .collect();
    Report {
        interval_secs: seconds,
        topics,
    }
}

fn print(report: &Report) {
    let mut rows = Vec::new();
    for topic in &report.topics {
        let t = topic;
        let lead = |subscription: String| {
            vec![
                t.name.clone(),
                t.partitions.to_string(),
                t.retained.to_string(),
                format!("{:.1}", topic.published_per_sec),
                subscription,
            ]
        };
        if topic.subscriptions.is_empty() {
            rows.push([lead("-".into()), vec!["-".into(); 8]].concat());
        }
        for s in &topic.subscriptions {
            rows.push(
                [
                    lead(s.name.clone()),
                    vec![
                        s.depth.to_string(),
                        s.in_flight.to_string(),
                        s.consumers.to_string(),
                        format!("{:.1}", s.delivered_per_sec),
                        format!("{:.1}", s.acked_per_sec),
                        s.nacked.to_string(),
                        s.dead_lettered.to_string(),
                        s.expired.to_string(),
                    ],
                ]
                .concat(),
            );
        }
    }
    table::print(
        &[
            "TOPIC",
            "PARTITIONS",
            "RETAINED",
            "PUBLISHED/S",
            "SUBSCRIPTION",
            "DEPTH",
            "IN FLIGHT",
            "CONSUMERS",
            "DELIVERED/S",
            "ACKED/S",
            "NACKED",
            "DEAD-LETTERED",
            "EXPIRED",
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, published: u64, acked: u64) -> TopicStats {
        TopicStats {
            name: name.into(),
            partitions: 2,
            retained: 5,
            retained_bytes: 50,
            published,
            subscriptions: vec![SubscriptionStats {
                name: "s".into(),
                depth: 5,
                in_flight: 1,
                consumers: 1,
                delivered: acked,
                acked,
                nacked: 0,
                dead_lettered: 0,
                expired: 0,
            }],
        }
    }

    /// `(published/s, acked/s)` of each topic in the report.
    fn check(before: &[TopicStats], after: Vec<TopicStats>, seconds: f64, expected: &[(f64, f64)]) {
        let report = report(before, after, seconds);
        let rates: Vec<(f64, f64)> = report
            .topics
            .iter()
            .map(|t| (t.published_per_sec, t.subscriptions[0].acked_per_sec))
            .collect();
        assert_eq!(rates, expected);
    }

    #[test]
    fn rates_are_growth_per_second_and_never_negative() {
        check(
            &[topic("a", 100, 10)],
            vec![topic("a", 300, 60)],
            2.0,
            &[(100.0, 25.0)],
        );
        check(&[], vec![topic("new", 300, 60)], 1.0, &[(0.0, 0.0)]);
        check(
            &[topic("a", 300, 60)],
            vec![topic("a", 10, 1)],
            1.0,
            &[(0.0, 0.0)],
        );
        check(
            &[topic("a", 0, 0)],
            vec![topic("a", 1, 1)],
            3.0,
            &[(0.3, 0.3)],
        );
    }
}
