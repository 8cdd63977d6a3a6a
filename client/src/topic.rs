//! What `list_topics` reports about a topic, and what declaring one did.

use raftmq_proto::v1 as proto;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    /// Messages still stored: not yet acknowledged by every subscription.
    pub retained: u64,
    pub subscriptions: Vec<String>,
}

impl From<proto::TopicInfo> for TopicInfo {
    fn from(topic: proto::TopicInfo) -> TopicInfo {
        TopicInfo {
            name: topic.name,
            partitions: topic.partitions,
            retained: topic.retained,
            subscriptions: topic.subscriptions,
        }
    }
}

/// A topic's depths and counts (`Client::topic_stats`). The counts only
/// grow, so rates are their differences between two calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicStats {
    pub name: String,
    pub partitions: u32,
    pub retained: u64,
    pub retained_bytes: u64,
    pub published: u64,
    pub subscriptions: Vec<SubscriptionStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionStats {
    pub name: String,
    /// Messages not yet acknowledged, in flight included.
    pub depth: u64,
    pub in_flight: u64,
    pub consumers: u64,
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub dead_lettered: u64,
    pub expired: u64,
}

impl From<proto::TopicStats> for TopicStats {
    fn from(topic: proto::TopicStats) -> TopicStats {
        TopicStats {
            name: topic.name,
            partitions: topic.partitions,
            retained: topic.retained,
            retained_bytes: topic.retained_bytes,
            published: topic.published,
            subscriptions: topic
                .subscriptions
                .into_iter()
                .map(|s| SubscriptionStats {
                    name: s.name,
                    depth: s.depth,
                    in_flight: s.in_flight,
                    consumers: s.consumers,
                    delivered: s.delivered,
                    acked: s.acked,
                    nacked: s.nacked,
                    dead_lettered: s.dead_lettered,
                    expired: s.expired,
                })
                .collect(),
        }
    }
}

/// What declaring a topic did. A retry after a lost answer reports
/// `Existed` for a topic the first attempt created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Declared {
    Created,
    /// It existed with the same settings; nothing changed.
    Existed,
}
