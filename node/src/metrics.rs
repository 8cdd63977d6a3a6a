//! The node's metrics in Prometheus text format, rendered on each scrape
//! from Raft's view, the log store's counters, the applied state and the
//! request histograms. README ("Metrics") lists them.
//!
//! Topic, subscription and consumer series come from the replicated state,
//! so every node shows the same cluster-wide values (and the counts survive
//! restarts); Raft, disk, request and process series are this node's own.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::broker::Broker;
use crate::grpc::{code_name, Refusals, RequestStats, Shares};
use crate::histogram::HistogramSnapshot;

/// Renders every metric of `broker`'s node.
pub fn render(
    broker: &Broker,
    requests: &RequestStats,
    refusals: &Refusals,
    shares: &Shares,
) -> String {
    let mut out = Exposition::default();
    raft(&mut out, broker);
    disk(&mut out, broker);
    topics(&mut out, broker);
    consumers(&mut out, broker);
    grpc(&mut out, requests);
    security(&mut out, refusals);
    client_shares(&mut out, shares);
    process(&mut out);
    out.0
}

fn raft(out: &mut Exposition, broker: &Broker) {
    let raft = broker.raft.status();
    let committed = broker.log.committed_index().ok().flatten();
    let index = |id: Option<u64>| id.unwrap_or(0);
    out.gauge("raftmq_node_id", "This node's id.", broker.id);
    out.gauge("raftmq_raft_term", "Current Raft term.", raft.term);
    out.gauge(
        "raftmq_raft_is_leader",
        "1 when this node is the Raft leader.",
        u64::from(raft.leader == Some(broker.id)),
    );
    out.gauge(
        "raftmq_raft_leader_id",
        "The leader this node knows (0: none).",
        raft.leader.unwrap_or(0),
    );
    out.counter(
        "raftmq_raft_elections_total",
        "Terms begun (elections, won or not) seen since this node started.",
        broker.leader_history.elections(),
    );
    out.counter(
        "raftmq_raft_leader_changes_total",
        "Times this node came to know a different leader.",
        broker.leader_history.leader_changes(),
    );
    out.gauge(
        "raftmq_raft_last_log_index",
        "Index of the last log entry.",
        index(raft.last_log_index),
    );
    out.gauge(
        "raftmq_raft_commit_index",
        "Last commit index recorded.",
        index(committed),
    );
    out.gauge(
        "raftmq_raft_applied_index",
        "Index of the last applied entry.",
        index(raft.applied),
    );
    out.gauge(
        "raftmq_raft_snapshot_index",
        "Last log index in the latest snapshot.",
        index(raft.snapshot),
    );
    out.header(
        "raftmq_raft_replication_lag_entries",
        "Entries a member is behind the leader's log (on the leader only).",
        "gauge",
    );
    if raft.leader == Some(broker.id) {
        let last = index(raft.last_log_index);
        for member in broker.raft.members() {
            if member.id == broker.id {
                continue;
            }
            let matched = member.matched.unwrap_or(0);
            out.sample(
                "raftmq_raft_replication_lag_entries",
                &labels(&[("member", &member.id.to_string())]),
                last.saturating_sub(matched),
            );
        }
    }
}

fn disk(out: &mut Exposition, broker: &Broker) {
    let stats = broker.log.stats();
    out.counter(
        "raftmq_log_appends_total",
        "Log append calls (each one fsync).",
        stats.appends.load(Ordering::Relaxed),
    );
    out.counter(
        "raftmq_log_entries_total",
        "Log entries appended; per fsync: rate of this over raftmq_log_fsyncs_total.",
        stats.entries.load(Ordering::Relaxed),
    );
    out.counter(
        "raftmq_log_entry_bytes_total",
        "Encoded bytes of appended log entries.",
        stats.entry_bytes.load(Ordering::Relaxed),
    );
    out.counter(
        "raftmq_log_fsyncs_total",
        "Disk syncs by the log store (appends and flushes).",
        stats.flushes.load(Ordering::Relaxed),
    );
    out.histogram(
        "raftmq_log_fsync_seconds",
        "How long a log append with its fsync, or a flush, took.",
        "",
        &stats.fsync.snapshot(),
    );
    let snapshots = broker.machine.snapshot_stats();
    out.gauge(
        "raftmq_snapshot_bytes",
        "Encoded size of the latest snapshot this node built (before compression).",
        snapshots.last_bytes.load(Ordering::Relaxed),
    );
    out.histogram(
        "raftmq_snapshot_build_seconds",
        "How long building a snapshot took, writing and syncing it included.",
        "",
        &snapshots.built.snapshot(),
    );
}

fn topics(out: &mut Exposition, broker: &Broker) {
    let topics = broker.machine.read(|state| state.topic_stats());
    out.gauge("raftmq_topics", "Topics.", topics.len() as u64);
    let family = |out: &mut Exposition, name: &str, help: &str, kind: &str| {
        out.header(name, help, kind);
        name.to_string()
    };
    let name = family(
        out,
        "raftmq_topic_retained_messages",
        "Messages a topic still stores.",
        "gauge",
    );
    for topic in &topics {
        out.sample(&name, &labels(&[("topic", &topic.name)]), topic.retained());
    }
    let name = family(
        out,
        "raftmq_topic_published_total",
        "Messages appended to a topic since it was created.",
        "counter",
    );
    for topic in &topics {
        out.sample(&name, &labels(&[("topic", &topic.name)]), topic.published);
    }
    for (name, help, value) in [
        (
            "raftmq_partition_retained_messages",
            "Messages a partition still stores.",
            (|p: &crate::machine::PartitionStats| p.retained) as fn(&_) -> u64,
        ),
        (
            "raftmq_partition_retained_bytes",
            "Bytes of the messages a partition still stores.",
            |p| p.retained_bytes,
        ),
        (
            "raftmq_partition_end_offset",
            "The offset the next message of a partition gets.",
            |p| p.end,
        ),
    ] {
        out.header(name, help, "gauge");
        for topic in &topics {
            for (index, partition) in topic.partitions.iter().enumerate() {
                let at = labels(&[("topic", &topic.name), ("partition", &index.to_string())]);
                out.sample(name, &at, value(partition));
            }
        }
    }
    for (name, help, depth) in [
        (
            "raftmq_subscription_depth",
            "Messages of a partition a subscription has not acknowledged (its lag), in flight included.",
            true,
        ),
        (
            "raftmq_subscription_in_flight",
            "Messages of a partition a subscription has handed out and not settled.",
            false,
        ),
    ] {
        out.header(name, help, "gauge");
        for topic in &topics {
            for subscription in &topic.subscriptions {
                let values = match depth {
                    true => &subscription.depth,
                    false => &subscription.in_flight,
                };
                for (index, value) in values.iter().enumerate() {
                    let at = labels(&[
                        ("topic", &topic.name),
                        ("subscription", &subscription.name),
                        ("partition", &index.to_string()),
                    ]);
                    out.sample(name, &at, *value);
                }
            }
        }
    }
    for (name, help, value) in [
        (
            "raftmq_subscription_consumers",
            "Consumers attached to a subscription.",
            (|s: &crate::machine::SubscriptionStats| s.consumers) as fn(&_) -> u64,
        ),
        (
            "raftmq_subscription_delivered_total",
            "Deliveries by a subscription, redeliveries included.",
            |s| s.tally.delivered,
        ),
        (
            "raftmq_subscription_acked_total",
            "Messages a subscription's consumers acknowledged.",
            |s| s.tally.acked,
        ),
        (
            "raftmq_subscription_nacked_total",
            "Messages a subscription's consumers returned (nack).",
            |s| s.tally.nacked,
        ),
        (
            "raftmq_subscription_dead_lettered_total",
            "Messages that left a subscription for a dead-letter topic, or were dropped (rejected, delivered too often, overflow).",
            |s| s.tally.dead_lettered,
        ),
        (
            "raftmq_subscription_expired_total",
            "Messages whose time to live ran out in a subscription.",
            |s| s.tally.expired,
        ),
    ] {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        out.header(name, help, kind);
        for topic in &topics {
            for subscription in &topic.subscriptions {
                let at = labels(&[("topic", &topic.name), ("subscription", &subscription.name)]);
                out.sample(name, &at, value(subscription));
            }
        }
    }
}

fn consumers(out: &mut Exposition, broker: &Broker) {
    let (consumers, credit) = broker
        .machine
        .read(|state| (state.consumer_count(), state.consumer_credit()));
    out.gauge(
        "raftmq_consumers",
        "Consumers attached, cluster wide.",
        consumers as u64,
    );
    out.gauge(
        "raftmq_local_sessions",
        "Consumer streams served by this node.",
        broker.sessions.len() as u64,
    );
    for (name, help, prefetch) in [
        (
            "raftmq_consumer_in_flight",
            "Unacknowledged messages a consumer holds, as the state machine counts them.",
            false,
        ),
        ("raftmq_consumer_prefetch", "A consumer's prefetch.", true),
    ] {
        out.header(name, help, "gauge");
        for (id, in_flight, limit) in &credit {
            let value = if prefetch { limit } else { in_flight };
            out.sample(
                name,
                &labels(&[("consumer", &id.to_string())]),
                u64::from(*value),
            );
        }
    }
}

fn grpc(out: &mut Exposition, requests: &RequestStats) {
    let name = "raftmq_grpc_request_seconds";
    out.header(
        name,
        "gRPC requests by method and status code: unary calls to their answer, streams to their opening.",
        "histogram",
    );
    for ((method, code), histogram) in requests.snapshot() {
        let at = format!("method=\"{method}\",code=\"{}\"", code_name(code));
        out.histogram_samples(name, &at, &histogram);
    }
}

fn security(out: &mut Exposition, refusals: &Refusals) {
    let name = "raftmq_peer_refusals_total";
    out.header(
        name,
        "Raft RPCs refused before Raft saw them: another cluster's id, or no node certificate of this cluster.",
        "counter",
    );
    for (reason, count) in refusals.peers() {
        out.sample(name, &labels(&[("reason", reason)]), count);
    }
    let name = "raftmq_unauthenticated_total";
    out.header(
        name,
        "Client requests refused with UNAUTHENTICATED, by reason.",
        "counter",
    );
    for (reason, count) in refusals.unauthenticated() {
        out.sample(name, &labels(&[("reason", reason)]), count);
    }
    out.counter(
        "raftmq_permission_denied_total",
        "Client requests refused with PERMISSION_DENIED.",
        refusals.denied(),
    );
}

fn client_shares(out: &mut Exposition, shares: &Shares) {
    let name = "raftmq_share_waits_total";
    out.header(
        name,
        "Client commands that waited for room in their connection's or user's share of commands and bytes awaiting commit.",
        "counter",
    );
    for (holder, count) in shares.waits() {
        out.sample(name, &labels(&[("share", holder)]), count);
    }
    let name = "raftmq_share_refusals_total";
    out.header(
        name,
        "Consumers refused (RESOURCE_EXHAUSTED): their connection or user had its share attached.",
        "counter",
    );
    for (holder, count) in shares.refused() {
        out.sample(name, &labels(&[("share", holder)]), count);
    }
}

/// Resident memory and open files, from Linux's /proc (absent elsewhere).
fn process(out: &mut Exposition) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    if let Some(kib) = rss_kib {
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            kib * 1024,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            fds.count() as u64,
        );
    }
}

/// `name="value"` pairs. Topic and subscription names are
/// `[A-Za-z0-9._-]` and ids are numbers, so values need no escaping.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Builds the text format.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: u64) {
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "gauge");
        self.sample(name, "", value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        self.sample(name, "", value);
    }

    fn histogram(&mut self, name: &str, help: &str, labels: &str, histogram: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        self.histogram_samples(name, labels, histogram);
    }

    /// `labels` without braces (`a="b",c="d"`), or empty.
    fn histogram_samples(&mut self, name: &str, labels: &str, histogram: &HistogramSnapshot) {
        let with = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{{{extra}}}"),
            (false, true) => format!("{{{labels}}}"),
            (false, false) => format!("{{{labels},{extra}}}"),
        };
        for (bound, count) in &histogram.buckets {
            let _ = writeln!(
                self.0,
                "{name}_bucket{} {count}",
                with(&format!("le=\"{bound}\""))
            );
        }
        let _ = writeln!(
            self.0,
            "{name}_bucket{} {}",
            with("le=\"+Inf\""),
            histogram.count
        );
        let _ = writeln!(self.0, "{name}_sum{} {}", with(""), histogram.sum_seconds);
        let _ = writeln!(self.0, "{name}_count{} {}", with(""), histogram.count);
    }
}
