//! Acks, nacks, ack timeouts and dead letters: how a message in flight
//! leaves it.

use std::collections::BTreeMap;

use super::effect::Effect;
use super::ids::ConsumerId;
use super::ledger::Ledger;
use super::limits::POSITIONS_PER_COMMAND_MAX;
use super::quirks::{self, Quirk};
use super::rejection::Rejection;
use super::subscription::Standing;
use super::topic::{NewMessage, Topic};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settle {
    Ack,
    /// Returns the messages, counting a failure: for redelivery after
    /// `delay_ms`, or to the dead-letter topic when `requeue` is false.
    Nack {
        requeue: bool,
        delay_ms: u64,
    },
}

/// The `x-raftmq-dead-letter-reason` header values.
pub const REASON_REJECTED: &str = "rejected";
pub const REASON_MAX_DELIVERIES: &str = "max-deliveries";

/// A message to move to its subscription's dead-letter topic.
struct DeadLetter {
    topic: String,
    subscription: String,
    partition: u32,
    offset: u64,
    reason: &'static str,
}

/// Acks or nacks `positions` of one subscription.
pub(super) fn settle(
    ledger: &mut Ledger<'_>,
    topic_name: &str,
    subscription_name: &str,
    positions: &[(u32, u64)],
    settle: Settle,
    effects: &mut Vec<Effect>,
) -> Result<(), Rejection> {
    if positions.len() > POSITIONS_PER_COMMAND_MAX {
        return Err(Rejection::LimitReached {
            what: "positions per ack".into(),
            max: POSITIONS_PER_COMMAND_MAX,
        });
    }
    let now_ms = ledger.moment.now_ms;
    let topic = ledger.topic_mut(topic_name)?;
    let partitions = topic.partition_count();
    let subscription = topic
        .subscriptions
        .get_mut(subscription_name)
        .ok_or_else(|| Rejection::UnknownSubscription {
            topic: topic_name.into(),
            subscription: subscription_name.into(),
        })?;
    // Check every position before changing anything: a command applies
    // whole or not at all.
    for &(partition, offset) in positions {
        let cursor =
            subscription
                .cursors
                .get(partition as usize)
                .ok_or(Rejection::UnknownPartition {
                    partition,
                    partitions,
                })?;
        let end = topic.partitions[partition as usize].end();
        match (settle, cursor.standing(offset)) {
            _ if offset >= end => return Err(Rejection::NoSuchMessage { partition, offset }),
            (_, Standing::NeverDelivered) => {
                return Err(Rejection::NotDelivered { partition, offset })
            }
            (Settle::Nack { .. }, Standing::Acked | Standing::Returned) => {
                return Err(Rejection::NotInFlight { partition, offset })
            }
            _ => {}
        }
    }
    let max_deliveries = subscription.config.max_deliveries;
    let mut freed: Vec<ConsumerId> = Vec::new();
    let mut dead = Vec::new();
    let dropped = usize::from(settle == Settle::Ack && quirks::on(Quirk::AckDropsLast));
    for &(partition, offset) in &positions[..positions.len().saturating_sub(dropped)] {
        let cursor = &mut subscription.cursors[partition as usize];
        match settle {
            Settle::Ack => freed.extend(cursor.ack(offset)),
            Settle::Nack { requeue, delay_ms } => {
                let Some((holder, counts)) =
                    cursor.give_back(offset, true, now_ms.saturating_add(delay_ms))
                else {
                    continue;
                };
                freed.push(holder);
                let reason = match () {
                    _ if !requeue => Some(REASON_REJECTED),
                    _ if max_deliveries > 0 && counts.failures >= max_deliveries => {
                        Some(REASON_MAX_DELIVERIES)
                    }
                    _ => None,
                };
                dead.extend(reason.map(|reason| DeadLetter {
                    topic: topic_name.to_string(),
                    subscription: subscription_name.to_string(),
                    partition,
                    offset,
                    reason,
                }));
            }
        }
    }
    topic.trim();
    ledger.refill(freed);
    dead_letters(ledger, dead, effects);
    ledger.dispatch(topic_name, subscription_name, effects);
    Ok(())
}

/// Returns every message whose ack deadline passed, counting a failure,
/// and hands out what became due (expired or delayed).
pub(super) fn tick(ledger: &mut Ledger<'_>, effects: &mut Vec<Effect>) {
    let now_ms = ledger.moment.now_ms;
    let (mut freed, mut dead, mut due) = (Vec::new(), Vec::new(), Vec::new());
    for (topic_name, topic) in ledger.topics.iter_mut() {
        for (subscription_name, subscription) in &mut topic.subscriptions {
            let max_deliveries = subscription.config.max_deliveries;
            for (partition, cursor) in subscription.cursors.iter_mut().enumerate() {
                for offset in cursor.expired(now_ms) {
                    let Some((holder, counts)) = cursor.give_back(offset, true, 0) else {
                        continue;
                    };
                    freed.push(holder);
                    if max_deliveries > 0 && counts.failures >= max_deliveries {
                        dead.push(DeadLetter {
                            topic: topic_name.clone(),
                            subscription: subscription_name.clone(),
                            partition: partition as u32,
                            offset,
                            reason: REASON_MAX_DELIVERIES,
                        });
                    }
                }
            }
            if !subscription.consumers.is_empty() {
                due.push((topic_name.clone(), subscription_name.clone()));
            }
        }
    }
    ledger.refill(freed);
    dead_letters(ledger, dead, effects);
    for (topic, subscription) in due {
        ledger.dispatch(&topic, &subscription, effects);
    }
}

/// The earliest time a tick has work: an ack deadline or a delayed
/// redelivery. The leader appends a tick only then, never periodically.
pub(super) fn next_deadline(topics: &BTreeMap<String, Topic>, now_ms: u64) -> Option<u64> {
    topics
        .values()
        .flat_map(|t| t.subscriptions.values())
        .flat_map(|s| s.cursors.iter())
        .filter_map(|c| c.next_deadline(now_ms))
        .min()
}

/// Moves each message to its subscription's dead-letter topic, with
/// headers saying why and from where, and acks it where it was. Without
/// a dead-letter topic a rejected message is dropped (the consumer asked
/// for it) and an over-delivered one stays for redelivery; if the
/// dead-letter topic is gone, the message stays too: never lost.
fn dead_letters(ledger: &mut Ledger<'_>, dead: Vec<DeadLetter>, effects: &mut Vec<Effect>) {
    for letter in dead {
        let Some(topic) = ledger.topics.get(&letter.topic) else {
            continue;
        };
        let Some(subscription) = topic.subscriptions.get(&letter.subscription) else {
            continue;
        };
        let Some(message) = topic.partitions[letter.partition as usize]
            .get(letter.offset)
            .cloned()
        else {
            continue;
        };
        let failures = subscription.cursors[letter.partition as usize]
            .returned
            .get(&letter.offset)
            .map_or(0, |r| r.counts.failures);
        let moved = match subscription.config.dead_letter_topic.clone() {
            Some(dlq) => {
                let mut headers = message.headers;
                headers.insert("x-raftmq-dead-letter-reason".into(), letter.reason.into());
                headers.insert("x-raftmq-source-topic".into(), letter.topic.clone());
                headers.insert(
                    "x-raftmq-source-subscription".into(),
                    letter.subscription.clone(),
                );
                headers.insert(
                    "x-raftmq-source-partition".into(),
                    letter.partition.to_string(),
                );
                headers.insert("x-raftmq-source-offset".into(), letter.offset.to_string());
                headers.insert("x-raftmq-failures".into(), failures.to_string());
                let copy = NewMessage {
                    key: message.key,
                    payload: message.payload,
                    headers,
                };
                let appended = ledger.append(&dlq, vec![copy]).is_ok();
                if appended {
                    ledger.dispatch_topic(&dlq, effects);
                }
                appended
            }
            None => letter.reason == REASON_REJECTED,
        };
        if moved {
            ack_moved(ledger.topics, &letter);
        }
    }
}

/// Acks a dead letter where it was, now that it moved.
fn ack_moved(topics: &mut BTreeMap<String, Topic>, letter: &DeadLetter) {
    if let Some(topic) = topics.get_mut(&letter.topic) {
        if let Some(subscription) = topic.subscriptions.get_mut(&letter.subscription) {
            subscription.cursors[letter.partition as usize].ack(letter.offset);
        }
        topic.trim();
    }
}
