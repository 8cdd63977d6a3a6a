//! Acks, nacks and ack timeouts: how a message in flight leaves it, to
//! be acked, redelivered or dead-lettered (`Ledger::dead_letters`).

use std::collections::BTreeSet;

use super::deadlines::Due;
use super::effect::Effect;
use super::ids::ConsumerId;
use super::ledger::{DeadLetter, Ledger, REASON_MAX_DELIVERIES, REASON_REJECTED};
use super::limits::POSITIONS_PER_COMMAND_MAX;
use super::quirks::{self, Quirk};
use super::rejection::Rejection;
use super::subscription::{Standing, Tally};

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
    let (topic, deadlines, live) = ledger.topic_and_books(topic_name)?;
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
            // Waiting for its delay, it was never delivered either.
            _ if cursor.deferred(offset) => {
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
    let mut tally = Tally::default();
    let dropped = usize::from(settle == Settle::Ack && quirks::on(Quirk::AckDropsLast));
    for &(partition, offset) in &positions[..positions.len().saturating_sub(dropped)] {
        let cursor = &mut subscription.cursors[partition as usize];
        let mut deadlines = deadlines.of(topic_name, subscription_name, partition);
        match settle {
            Settle::Ack => {
                tally.acked += u64::from(cursor.standing(offset) != Standing::Acked);
                freed.extend(cursor.ack(offset, &mut deadlines));
            }
            Settle::Nack { requeue, delay_ms } => {
                // 0: no delay, so no deadline (`Returned::not_before_ms`).
                let not_before_ms = match delay_ms {
                    0 => 0,
                    _ => now_ms.saturating_add(delay_ms),
                };
                let Some((holder, counts)) =
                    cursor.give_back(offset, true, not_before_ms, &mut deadlines)
                else {
                    continue;
                };
                tally.nacked += 1;
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
    subscription.tally.acked += tally.acked;
    subscription.tally.nacked += tally.nacked;
    topic.trim(live);
    ledger.refill(freed);
    ledger.dead_letters(dead, effects);
    ledger.dispatch(topic_name, subscription_name, effects);
    Ok(())
}

/// Settles what is due, and only that: returns every message whose ack
/// deadline passed, counting a failure, ends the delays whose time came,
/// and hands out what became free in those subscriptions. Its cost follows
/// what is due (`Deadlines::pop_due`), not how much exists.
pub(super) fn tick(ledger: &mut Ledger<'_>, effects: &mut Vec<Effect>) {
    let (mut freed, mut dead, mut touched) = (Vec::new(), Vec::new(), BTreeSet::new());
    // In (topic, subscription, partition, offset) order, as a walk over the
    // topics would meet them: dead letters reach their topics in that order.
    for key in ledger.deadlines.pop_due(ledger.moment.now_ms) {
        let Some(subscription) = ledger
            .topics
            .get_mut(&key.topic)
            .and_then(|t| t.subscriptions.get_mut(&key.subscription))
        else {
            continue;
        };
        let max_deliveries = subscription.config.max_deliveries;
        let Some(cursor) = subscription.cursors.get_mut(key.partition as usize) else {
            continue;
        };
        let mut deadlines = ledger
            .deadlines
            .of(&key.topic, &key.subscription, key.partition);
        match key.due {
            Due::AckTimeout => {
                let Some((holder, counts)) = cursor.give_back(key.offset, true, 0, &mut deadlines)
                else {
                    continue;
                };
                freed.push(holder);
                if max_deliveries > 0 && counts.failures >= max_deliveries {
                    dead.push(DeadLetter {
                        topic: key.topic.clone(),
                        subscription: key.subscription.clone(),
                        partition: key.partition,
                        offset: key.offset,
                        reason: REASON_MAX_DELIVERIES,
                    });
                }
            }
            Due::Redelivery => cursor.end_delay(key.offset, &mut deadlines),
        }
        touched.insert((key.topic, key.subscription));
    }
    ledger.refill(freed);
    ledger.dead_letters(dead, effects);
    // Every other subscription handed out all it could when it last
    // changed; only time (what was due) frees more.
    for (topic, subscription) in touched {
        ledger.dispatch(&topic, &subscription, effects);
    }
}
