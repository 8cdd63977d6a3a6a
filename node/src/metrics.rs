//! The node's metrics in Prometheus text format, rendered on each scrape
//! from Raft's metrics, the log store's counters and the applied state.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::broker::Broker;

/// Renders every metric of `broker`'s node.
pub fn render(broker: &Broker) -> String {
    let raft = broker.raft.status();
    let stats = broker.log.stats();
    let committed = broker.log.committed_index().ok().flatten();
    let (topics, consumers, credit) = broker.machine.read(|state| {
        (
            state.topics(),
            state.consumer_count(),
            state.consumer_credit(),
        )
    });
    let mut out = Exposition::default();
    out.gauge("raftmq_node_id", "This node's id.", broker.id);
    out.gauge("raftmq_raft_term", "Current Raft term.", raft.term);
    out.gauge(
        "raftmq_raft_is_leader",
        "1 when this node is the Raft leader.",
        u64::from(raft.leader == Some(broker.id)),
    );
    let index = |id: Option<u64>| id.unwrap_or(0);
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
    out.counter(
        "raftmq_log_appends_total",
        "Log append calls.",
        stats.appends.load(Ordering::Relaxed),
    );
    out.counter(
        "raftmq_log_entries_total",
        "Log entries appended.",
        stats.entries.load(Ordering::Relaxed),
    );
    out.counter(
        "raftmq_log_entry_bytes_total",
        "Encoded bytes of appended log entries.",
        stats.entry_bytes.load(Ordering::Relaxed),
    );
    out.counter(
        "raftmq_log_flushes_total",
        "Disk flushes (fsync) by the log store.",
        stats.flushes.load(Ordering::Relaxed),
    );
    out.gauge("raftmq_topics", "Topics.", topics.len() as u64);
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
    out.header(
        "raftmq_consumer_in_flight",
        "Unacknowledged messages a consumer holds, as the state machine counts them.",
        "gauge",
    );
    for (id, in_flight, _) in &credit {
        out.sample(
            "raftmq_consumer_in_flight",
            &format!("{{consumer=\"{id}\"}}"),
            u64::from(*in_flight),
        );
    }
    out.header(
        "raftmq_consumer_prefetch",
        "A consumer's prefetch.",
        "gauge",
    );
    for (id, _, prefetch) in &credit {
        out.sample(
            "raftmq_consumer_prefetch",
            &format!("{{consumer=\"{id}\"}}"),
            u64::from(*prefetch),
        );
    }
    out.header(
        "raftmq_topic_retained_messages",
        "Messages a topic still stores.",
        "gauge",
    );
    for topic in &topics {
        out.sample(
            "raftmq_topic_retained_messages",
            &format!("{{topic=\"{}\"}}", topic.name),
            topic.retained,
        );
    }
    out.0
}

/// Builds the text format. Topic names are `[A-Za-z0-9._-]`, so label values
/// need no escaping.
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
}
