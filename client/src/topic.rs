//! What `list_topics` reports about a topic.

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
