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

/// What declaring a topic did. A retry after a lost answer reports
/// `Existed` for a topic the first attempt created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Declared {
    Created,
    /// It existed with the same settings; nothing changed.
    Existed,
}
