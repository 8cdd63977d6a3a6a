//! Protobuf to state-machine types and back.

use std::time::Duration;

use raftmq_proto::v1;

use crate::machine::{
    Delivery, Message, Mode, NewMessage, Properties, Start, SubscriptionConfig, TopicStats,
    TopicSummary,
};
use crate::raft::{Member, RaftStatus};

pub fn new_message(message: v1::Message) -> NewMessage {
    NewMessage {
        key: message.key,
        payload: message.payload,
        headers: message.headers.into_iter().collect(),
        properties: message
            .properties
            .filter(|p| **p != v1::Properties::default())
            .map(|p| {
                Box::new(Properties {
                    content_type: p.content_type,
                    content_encoding: p.content_encoding,
                    correlation_id: p.correlation_id,
                    reply_to: p.reply_to,
                    message_id: p.message_id,
                    timestamp_ms: p.timestamp_ms,
                    r#type: p.r#type,
                    app_id: p.app_id,
                    ttl_ms: p.ttl_ms,
                    delay_ms: p.delay_ms,
                    not_before_ms: p.not_before_ms,
                    priority: p.priority,
                })
            }),
    }
}

fn properties(properties: Properties) -> v1::Properties {
    v1::Properties {
        content_type: properties.content_type,
        content_encoding: properties.content_encoding,
        correlation_id: properties.correlation_id,
        reply_to: properties.reply_to,
        message_id: properties.message_id,
        timestamp_ms: properties.timestamp_ms,
        r#type: properties.r#type,
        app_id: properties.app_id,
        ttl_ms: properties.ttl_ms,
        delay_ms: properties.delay_ms,
        not_before_ms: properties.not_before_ms,
        priority: properties.priority,
    }
}

/// A delivery with its body, `message`, read from the log.
pub fn delivery(delivery: Delivery, message: Message) -> v1::Delivery {
    v1::Delivery {
        consumer_id: delivery.consumer,
        sequence: delivery.sequence,
        partition: delivery.partition,
        offset: delivery.offset,
        key: message.key,
        payload: message.payload,
        headers: message.headers.into_iter().collect(),
        attempts: delivery.attempts,
        redelivered: delivery.attempts > 1,
        publish_time_ms: message.publish_ms,
        decided_at: delivery.decided_at,
        decided_time_ms: delivery.decided_ms,
        properties: message.properties.map(|p| Box::new(properties(*p))),
    }
}

pub fn topic_info(topic: TopicSummary) -> v1::TopicInfo {
    v1::TopicInfo {
        name: topic.name,
        partitions: topic.partitions,
        retained: topic.retained,
        subscriptions: topic.subscriptions,
    }
}

pub fn topic_stats(topic: TopicStats) -> v1::TopicStats {
    v1::TopicStats {
        retained: topic.retained(),
        retained_bytes: topic.partitions.iter().map(|p| p.retained_bytes).sum(),
        partitions: topic.partitions.len() as u32,
        published: topic.published,
        subscriptions: topic
            .subscriptions
            .iter()
            .map(|s| s.totals())
            .map(|s| v1::SubscriptionStats {
                name: s.name,
                depth: s.depth,
                in_flight: s.in_flight,
                consumers: s.consumers,
                delivered: s.tally.delivered,
                acked: s.tally.acked,
                nacked: s.tally.nacked,
                dead_lettered: s.tally.dead_lettered,
                expired: s.tally.expired,
            })
            .collect(),
        name: topic.name,
    }
}

pub fn positions(positions: &[v1::Position]) -> Vec<(u32, u64)> {
    positions.iter().map(|p| (p.partition, p.offset)).collect()
}

pub fn position((partition, offset): (u32, u64)) -> v1::Position {
    v1::Position { partition, offset }
}

/// The subscription settings a subscribe request carries, if it sets any.
pub fn subscription_config(request: &v1::SubscribeRequest) -> Option<SubscriptionConfig> {
    let mode = match request.mode() {
        v1::SubscriptionMode::Unspecified => None,
        v1::SubscriptionMode::Exclusive => Some(Mode::Exclusive),
        v1::SubscriptionMode::Failover => Some(Mode::Failover),
        v1::SubscriptionMode::Shared => Some(Mode::Shared),
        v1::SubscriptionMode::KeyShared => Some(Mode::KeyShared),
    };
    let start = match request.start() {
        v1::StartPosition::Earliest => Start::Earliest,
        v1::StartPosition::Latest => Start::Latest,
        v1::StartPosition::Offset => Start::Offset(request.start_offset),
        v1::StartPosition::Time => Start::Time(request.start_time_ms),
    };
    let settings = request.ack_timeout_ms > 0
        || request.max_deliveries > 0
        || request.dead_letter_topic.is_some()
        || request.dead_letter_exchange.is_some()
        || start != Start::Earliest;
    (mode.is_some() || settings).then(|| SubscriptionConfig {
        mode: mode.unwrap_or_default(),
        ack_timeout_ms: request.ack_timeout_ms,
        max_deliveries: request.max_deliveries,
        dead_letter_topic: request.dead_letter_topic.clone(),
        dead_letter_exchange: request.dead_letter_exchange.clone(),
        dead_letter_routing_key: request.dead_letter_routing_key.clone(),
        start,
    })
}

/// A node's `ClusterStatus` answer from its Raft status.
pub fn cluster_status(
    raft: RaftStatus,
    members: Vec<Member>,
    commit_index: Option<u64>,
    leaderless: Duration,
) -> v1::ClusterStatusResponse {
    v1::ClusterStatusResponse {
        node_id: raft.id,
        leader_id: raft.leader,
        term: raft.term,
        commit_index,
        applied_index: raft.applied,
        last_log_index: raft.last_log_index,
        role: raft.role.name().to_string(),
        members: self::members(members),
        leaderless_ms: leaderless.as_millis() as u64,
        snapshot_index: raft.snapshot,
    }
}

pub fn members(members: Vec<Member>) -> Vec<v1::Member> {
    members
        .into_iter()
        .map(|member| v1::Member {
            node_id: member.id,
            address: member.addresses.client,
            peer_address: member.addresses.peer,
            voter: member.voter,
            matched_index: member.matched,
        })
        .collect()
}
