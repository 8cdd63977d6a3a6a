//! A message handed to a consumer.

use std::collections::BTreeMap;

use bytes::Bytes;
use raftmq_proto::v1 as proto;

use crate::{Position, Properties};

/// A delivered message. Ack it (by `position()`, or pass `&Delivery`
/// directly to `Consumer::ack`) once processed; unacked messages come back
/// with `redelivered` set after the consumer detaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub offset: u64,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: BTreeMap<String, String>,
    /// As published; none when none was set.
    pub properties: Option<Box<Properties>>,
    /// Times this message was handed out, this one included.
    pub attempts: u32,
    pub redelivered: bool,
    /// The attach this delivery belongs to; changes on every re-subscribe.
    pub consumer_id: u64,
    /// Dense per `consumer_id` from 1; a gap means a delivery was lost.
    pub sequence: u64,
    /// The leader's clock at publish time, in ms since the Unix epoch.
    pub publish_time_ms: u64,
    /// The log index whose apply handed this message out: a delivery
    /// decided after an ack's `applied_at` cannot be the acked message.
    pub decided_at: u64,
    /// The leader's clock (the state machine's, never running back) when
    /// it was handed out: for a delayed message, at or after its time.
    pub decided_time_ms: u64,
}

impl Delivery {
    pub fn position(&self) -> Position {
        Position::new(self.partition, self.offset)
    }
}

impl From<&Delivery> for Position {
    fn from(delivery: &Delivery) -> Position {
        delivery.position()
    }
}

impl From<proto::Delivery> for Delivery {
    fn from(delivery: proto::Delivery) -> Delivery {
        Delivery {
            partition: delivery.partition,
            offset: delivery.offset,
            key: delivery.key,
            payload: delivery.payload,
            headers: delivery.headers.into_iter().collect(),
            properties: delivery.properties,
            attempts: delivery.attempts,
            redelivered: delivery.redelivered,
            consumer_id: delivery.consumer_id,
            sequence: delivery.sequence,
            publish_time_ms: delivery.publish_time_ms,
            decided_at: delivery.decided_at,
            decided_time_ms: delivery.decided_time_ms,
        }
    }
}
