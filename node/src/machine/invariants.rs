//! The state's own bookkeeping, checked: what a simulation asserts after
//! every step on every replica.

use std::collections::BTreeMap;

use super::deadlines::Deadlines;
use super::ids::{ConsumerId, KeyHash};
use super::state::State;
use super::subscription::{Cursor, Holder, Standing};
use super::topic::Partition;

impl State {
    /// Checks that every consumer's in-flight count matches the cursors and
    /// stays within its prefetch, that each cursor's sets lie where they
    /// belong, that the held keys match what is in flight, and that the
    /// deadline index holds exactly the deadlines the cursors imply, and
    /// the live-body index the entries the partitions point into, and that
    /// every binding is to a topic that exists, and that each expiring
    /// topic's clock runs exactly while it has no consumer.
    pub fn check_invariants(&self) -> Result<(), String> {
        check_deadlines(&self.deadlines, &self.implied_deadlines())?;
        if self.expiries != self.implied_expiries() {
            return Err("the expiry index differs from the topics' lifetimes".into());
        }
        for (name, topic) in &self.topics {
            let lifetime = &topic.lifetime;
            let unused = topic.consumer_count() == 0;
            if lifetime.expires_ms > 0 && lifetime.unused_since_ms.is_some() != unused {
                return Err(format!(
                    "topic {name:?}: unused since {:?} with {} consumer(s)",
                    lifetime.unused_since_ms,
                    topic.consumer_count()
                ));
            }
        }
        for exchange in self.exchanges.summaries() {
            if let Some(binding) = exchange
                .bindings
                .iter()
                .find(|b| !self.topics.contains_key(&b.topic))
            {
                return Err(format!(
                    "exchange {:?} is bound to topic {:?}, which does not exist",
                    exchange.name, binding.topic
                ));
            }
        }
        if self.live != self.implied_live() {
            return Err("the live-body index differs from the partitions".into());
        }
        let mut held: BTreeMap<ConsumerId, u32> = BTreeMap::new();
        for (name, topic) in &self.topics {
            for (sub_name, subscription) in &topic.subscriptions {
                for (index, cursor) in subscription.cursors.iter().enumerate() {
                    check_cursor(cursor, &topic.partitions[index])
                        .map_err(|broken| format!("{name}/{sub_name}/{index}: {broken}"))?;
                    for flight in cursor.in_flight.values() {
                        *held.entry(flight.consumer).or_default() += 1;
                    }
                }
            }
        }
        for (id, consumer) in &self.consumers {
            let counted = held.remove(id).unwrap_or(0);
            if counted != consumer.in_flight || consumer.in_flight > consumer.prefetch {
                return Err(format!(
                    "consumer {id}: in flight {} (cursors hold {counted}), prefetch {}",
                    consumer.in_flight, consumer.prefetch
                ));
            }
        }
        match held.first_key_value() {
            Some((id, count)) => Err(format!(
                "{count} messages in flight to unknown consumer {id}"
            )),
            None => Ok(()),
        }
    }
}

fn check_cursor(cursor: &Cursor, partition: &Partition) -> Result<(), String> {
    let end = partition.end();
    if cursor.floor > cursor.next || cursor.next > end {
        return Err(format!(
            "floor {} next {} end {end}",
            cursor.floor, cursor.next
        ));
    }
    if cursor.floor < partition.base {
        return Err(format!(
            "floor {} below retained base {}",
            cursor.floor, partition.base
        ));
    }
    if cursor.next < end && cursor.standing(cursor.next) != Standing::NeverDelivered {
        return Err(format!("next {} was handed out already", cursor.next));
    }
    let tracked = cursor
        .acked
        .iter()
        .chain(cursor.in_flight.keys())
        .chain(cursor.returned.keys());
    if let Some(offset) = tracked
        .into_iter()
        .find(|o| !(cursor.floor..end).contains(*o))
    {
        return Err(format!("offset {offset} tracked outside [floor, end)"));
    }
    let mut keys: BTreeMap<KeyHash, Holder> = BTreeMap::new();
    for flight in cursor.in_flight.values() {
        if let Some(key) = &flight.key {
            let holder = keys.entry(*key).or_insert(Holder {
                consumer: flight.consumer,
                count: 0,
            });
            if holder.consumer != flight.consumer {
                return Err(format!(
                    "key {key:?} in flight to {} and {}",
                    holder.consumer, flight.consumer
                ));
            }
            holder.count += 1;
        }
    }
    if keys != cursor.held_keys {
        return Err("held keys differ from what is in flight".into());
    }
    Ok(())
}

/// The index holds every deadline the cursors imply, and nothing else.
fn check_deadlines(index: &Deadlines, implied: &Deadlines) -> Result<(), String> {
    if let Some((at_ms, key)) = implied.first_not_in(index) {
        return Err(format!("deadline index lacks {key:?} at {at_ms}"));
    }
    if let Some((at_ms, key)) = index.first_not_in(implied) {
        return Err(format!(
            "deadline index holds {key:?} at {at_ms}, which no cursor implies"
        ));
    }
    Ok(())
}
