//! The node's read-only status page (`GET /` on the metrics port) and the
//! JSON it draws (`GET /status.json`): this node's view of the cluster, its
//! topics and subscriptions with depths and counts, and a short history of
//! the cluster-wide totals for the rate chart. The page is one file with no
//! external assets, so it works offline.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::broker::Broker;
use crate::machine::{SubscriptionTotals, TopicStats};

/// The page itself: HTML, CSS and the script that polls `/status.json`.
pub const PAGE: &str = include_str!("status_page.html");

/// How often the history takes a sample, and how many it keeps: ten
/// minutes.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const SAMPLES_MAX: usize = 120;

#[derive(Serialize)]
pub struct StatusView {
    pub node_id: u64,
    pub role: &'static str,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub members: Vec<MemberView>,
    pub topics: Vec<TopicView>,
    /// Oldest first.
    pub history: Vec<Sample>,
}

#[derive(Serialize)]
pub struct MemberView {
    pub id: u64,
    pub address: String,
    pub voter: bool,
    pub matched: Option<u64>,
}

#[derive(Serialize)]
pub struct TopicView {
    pub name: String,
    pub partitions: usize,
    pub retained: u64,
    pub retained_bytes: u64,
    pub published: u64,
    pub subscriptions: Vec<SubscriptionTotals>,
}

/// Cluster-wide totals at one moment.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the epoch, by the node's clock.
    pub at_ms: u64,
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
}

impl Sample {
    fn of(at_ms: u64, topics: &[TopicStats]) -> Sample {
        let subscriptions = || topics.iter().flat_map(|t| &t.subscriptions);
        Sample {
            at_ms,
            published: topics.iter().map(|t| t.published).sum(),
            delivered: subscriptions().map(|s| s.tally.delivered).sum(),
            acked: subscriptions().map(|s| s.tally.acked).sum(),
        }
    }
}

/// The last `SAMPLES_MAX` samples.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    pub fn record(&self, broker: &Broker, at_ms: u64) {
        let topics = broker.machine.read(|state| state.topic_stats());
        let mut samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES_MAX {
            samples.pop_front();
        }
        samples.push_back(Sample::of(at_ms, &topics));
    }

    fn samples(&self) -> Vec<Sample> {
        let samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        samples.iter().copied().collect()
    }
}

/// What the page shows now.
pub fn view(broker: &Broker, history: &History) -> StatusView {
    let raft = broker.raft.status();
    let topics = broker.machine.read(|state| state.topic_stats());
    StatusView {
        node_id: broker.id,
        role: raft.role.name(),
        leader_id: raft.leader,
        term: raft.term,
        commit_index: broker.log.committed_index().ok().flatten(),
        applied_index: raft.applied,
        members: broker
            .raft
            .members()
            .into_iter()
            .map(|m| MemberView {
                id: m.id,
                address: m.addresses.client,
                voter: m.voter,
                matched: m.matched,
            })
            .collect(),
        topics: topics.iter().map(topic_view).collect(),
        history: history.samples(),
    }
}

fn topic_view(topic: &TopicStats) -> TopicView {
    TopicView {
        name: topic.name.clone(),
        partitions: topic.partitions.len(),
        retained: topic.retained(),
        retained_bytes: topic.partitions.iter().map(|p| p.retained_bytes).sum(),
        published: topic.published,
        subscriptions: topic.subscriptions.iter().map(|s| s.totals()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_sums_every_topic_and_subscription() {
        let stats = |name: &str, published, delivered, acked| TopicStats {
            name: name.into(),
            published,
            partitions: vec![],
            subscriptions: vec![crate::machine::SubscriptionStats {
                name: "s".into(),
                depth: vec![],
                in_flight: vec![],
                consumers: 0,
                tally: crate::machine::Tally {
                    delivered,
                    acked,
                    ..Default::default()
                },
            }],
        };
        let sample = Sample::of(7, &[stats("a", 10, 4, 3), stats("b", 5, 2, 1)]);
        assert_eq!(
            sample,
            Sample {
                at_ms: 7,
                published: 15,
                delivered: 6,
                acked: 4
            }
        );
    }
}
