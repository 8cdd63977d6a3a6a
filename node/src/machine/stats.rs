//! What metrics, `raftmq stats` and the status page show of a topic: depths
//! and in-flight counts read off the state, and the counts it keeps
//! (`Topic::published`, `Subscription::tally`).

use serde::Serialize;

use super::subscription::{Subscription, Tally};
use super::topic::Topic;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    pub name: String,
    pub published: u64,
    /// One per partition, lanes of every priority level included.
    pub partitions: Vec<PartitionStats>,
    pub subscriptions: Vec<SubscriptionStats>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionStats {
    /// Messages the partition still stores.
    pub retained: u64,
    pub retained_bytes: u64,
    /// The offset the next message gets.
    pub end: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionStats {
    pub name: String,
    /// Messages not yet acknowledged (in flight included), per partition:
    /// the subscription's lag behind the partition's end.
    pub depth: Vec<u64>,
    /// Messages handed out and not yet settled, per partition.
    pub in_flight: Vec<u64>,
    pub consumers: u64,
    pub tally: Tally,
}

impl TopicStats {
    pub fn of(name: &str, topic: &Topic) -> TopicStats {
        TopicStats {
            name: name.to_string(),
            published: topic.published,
            partitions: topic
                .partitions
                .iter()
                .map(|p| PartitionStats {
                    retained: p.messages.len() as u64,
                    retained_bytes: p.bytes,
                    end: p.end(),
                })
                .collect(),
            subscriptions: topic
                .subscriptions
                .iter()
                .map(|(name, subscription)| SubscriptionStats::of(name, subscription, topic))
                .collect(),
        }
    }

    /// Messages stored, over every partition.
    pub fn retained(&self) -> u64 {
        self.partitions.iter().map(|p| p.retained).sum()
    }
}

impl SubscriptionStats {
    fn of(name: &str, subscription: &Subscription, topic: &Topic) -> SubscriptionStats {
        let (depth, in_flight) = subscription
            .cursors
            .iter()
            .zip(&topic.partitions)
            .map(|(cursor, partition)| {
                let unacked = partition.end().saturating_sub(cursor.floor);
                (
                    unacked.saturating_sub(cursor.acked.len() as u64),
                    cursor.in_flight.len() as u64,
                )
            })
            .unzip();
        SubscriptionStats {
            name: name.to_string(),
            depth,
            in_flight,
            consumers: subscription.consumers.len() as u64,
            tally: subscription.tally,
        }
    }

    /// Its counts summed over the partitions.
    pub fn totals(&self) -> SubscriptionTotals {
        SubscriptionTotals {
            name: self.name.clone(),
            depth: self.depth.iter().sum(),
            in_flight: self.in_flight.iter().sum(),
            consumers: self.consumers,
            tally: self.tally,
        }
    }
}

/// A subscription over all its partitions, as `TopicStats` answers and
/// the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriptionTotals {
    pub name: String,
    pub depth: u64,
    pub in_flight: u64,
    pub consumers: u64,
    #[serde(flatten)]
    pub tally: Tally,
}
