//! The topics and the consumers as one command changes them, at one moment:
//! the moves several commands are made of (append, dispatch, dead letters,
//! give credit back). Applying (`state.rs`) and settling (`settle.rs`) both build on
//! them; they know neither.

use std::collections::{BTreeMap, BTreeSet};

use super::command::Placement;
use super::consumer::Consumer;
use super::deadlines::Deadlines;
use super::dispatch::{self, Moment};
use super::effect::Effect;
use super::exchange::Exchanges;
use super::ids::ConsumerId;
use super::live::LiveBodies;
use super::quirks::{self, Quirk};
use super::rejection::Rejection;
use super::subscription::Standing;
use super::topic::{counted_bytes, BodyRef, NewMessage, Stored, Topic};

/// The `x-raftmq-dead-letter-reason` header values.
pub const REASON_REJECTED: &str = "rejected";
pub const REASON_MAX_DELIVERIES: &str = "max-deliveries";
pub const REASON_EXPIRED: &str = "expired";
pub const REASON_MAXLEN: &str = "maxlen";

/// A message to move to its subscription's dead-letter topic.
pub(super) struct DeadLetter {
    pub topic: String,
    pub subscription: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: &'static str,
}

/// A view of the state's topics, consumers and deadlines during one
/// command.
pub(super) struct Ledger<'a> {
    pub topics: &'a mut BTreeMap<String, Topic>,
    pub consumers: &'a mut BTreeMap<ConsumerId, Consumer>,
    /// The topics' deadlines, kept in step by every cursor move.
    pub deadlines: &'a mut Deadlines,
    /// The log entries retained messages' bodies are in, kept in step by
    /// every append and trim.
    pub live: &'a mut LiveBodies,
    /// The exchanges, for dead letters routed through one.
    pub exchanges: &'a Exchanges,
    /// The state machine's time and the log index being applied.
    pub moment: Moment,
}

impl Ledger<'_> {
    pub fn topic_mut(&mut self, name: &str) -> Result<&mut Topic, Rejection> {
        self.topic_and_books(name).map(|(topic, ..)| topic)
    }

    /// A topic, and the deadlines and live bodies its moves keep in step.
    pub fn topic_and_books(
        &mut self,
        name: &str,
    ) -> Result<(&mut Topic, &mut Deadlines, &mut LiveBodies), Rejection> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.into()))?;
        Ok((topic, &mut *self.deadlines, &mut *self.live))
    }

    /// Appends the messages of one publish to a topic, stamped with the
    /// state machine's time. `first_slot` is the first message's place in
    /// the entry being applied (`Request::published`): with the entry's
    /// index and term it says where each body stays.
    pub fn append(
        &mut self,
        name: &str,
        messages: &[NewMessage],
        first_slot: u32,
    ) -> Result<Vec<(u32, u64)>, Rejection> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.into()))?;
        let bytes = messages.iter().map(counted_bytes).sum();
        topic.admit(name, messages.len() as u64, bytes)?;
        let mut slots: Vec<(u32, &NewMessage)> = (first_slot..).zip(messages).collect();
        let reversed = quirks::on(Quirk::BatchReversed);
        if reversed {
            slots.reverse();
        }
        let mut positions: Vec<(u32, u64)> = slots
            .into_iter()
            .map(|(slot, m)| {
                let (stored, due) = record(topic, m, slot, self.moment);
                topic.store(stored, due, self.live)
            })
            .collect();
        if reversed {
            positions.reverse();
        }
        Ok(positions)
    }

    /// Appends each message of one publish through an exchange to the
    /// topics `routes` sends it to (`routes[i]` for `messages[i]`), its
    /// body stored once at its slot: (topic, partition, offset) for each.
    /// Refused whole, storing nothing, if it would take one of those
    /// topics past its limits.
    pub fn append_routed(
        &mut self,
        messages: &[NewMessage],
        routes: &[BTreeSet<String>],
        first_slot: u32,
    ) -> Result<Vec<Vec<Placement>>, Rejection> {
        let mut adding: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (message, topics) in messages.iter().zip(routes) {
            for topic in topics {
                let (count, bytes) = adding.entry(topic).or_default();
                *count += 1;
                *bytes += counted_bytes(message);
            }
        }
        for (name, (count, bytes)) in &adding {
            self.topic_mut(name)?.admit(name, *count, *bytes)?;
        }
        let placements = messages
            .iter()
            .zip(routes)
            .zip(first_slot..)
            .map(|((message, topics), slot)| {
                topics
                    .iter()
                    .filter_map(|name| {
                        let topic = self.topics.get_mut(name)?;
                        let (stored, due) = record(topic, message, slot, self.moment);
                        let (partition, offset) = topic.store(stored, due, self.live);
                        Some((name.clone(), partition, offset))
                    })
                    .collect()
            })
            .collect();
        Ok(placements)
    }

    /// Appends a message already stored elsewhere (a dead letter): its
    /// body stays where it is.
    pub fn append_stored(&mut self, name: &str, stored: Stored) -> Result<(u32, u64), Rejection> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.into()))?;
        topic.admit(name, 1, u64::from(stored.bytes))?;
        Ok(topic.store(stored, None, self.live))
    }

    /// Hands out what the subscription's consumers have credit for. The
    /// expired messages dispatch passed over are dead-lettered (or, with
    /// no dead-letter topic, dropped), and dispatch goes on past them,
    /// for as long as that moves some.
    pub fn dispatch(
        &mut self,
        topic_name: &str,
        subscription_name: &str,
        effects: &mut Vec<Effect>,
    ) {
        loop {
            let Some(topic) = self.topics.get_mut(topic_name) else {
                return;
            };
            let expired = dispatch::dispatch(
                topic_name,
                topic,
                subscription_name,
                self.consumers,
                self.deadlines,
                self.moment,
                effects,
            );
            let letters = expired.into_iter().map(|(partition, offset)| DeadLetter {
                topic: topic_name.to_string(),
                subscription: subscription_name.to_string(),
                partition,
                offset,
                reason: REASON_EXPIRED,
            });
            if self.dead_letters(letters.collect(), effects) == 0 {
                return;
            }
        }
    }

    /// Moves each message to its subscription's dead-letter topic, with
    /// headers saying why and from where, and acks it where it was; answers
    /// how many moved. Without a dead-letter topic a rejected or expired
    /// message is dropped (the consumer asked for it; its time is up) and
    /// an over-delivered one stays for redelivery; if the dead-letter
    /// topic is gone or full, the message stays too: never lost.
    pub fn dead_letters(&mut self, dead: Vec<DeadLetter>, effects: &mut Vec<Effect>) -> usize {
        let mut moved_count = 0;
        for letter in dead {
            let Some(topic) = self.topics.get(&letter.topic) else {
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
            let headers: BTreeMap<String, String> = [
                ("x-raftmq-dead-letter-reason", letter.reason.to_string()),
                ("x-raftmq-source-topic", letter.topic.clone()),
                ("x-raftmq-source-subscription", letter.subscription.clone()),
                ("x-raftmq-source-partition", letter.partition.to_string()),
                ("x-raftmq-source-offset", letter.offset.to_string()),
                ("x-raftmq-failures", failures.to_string()),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
            let config = &subscription.config;
            // Where it goes: the dead-letter topic, or the topics the
            // dead-letter exchange routes it to (by the configured key, else
            // its topic's name; a headers exchange sees the headers above).
            let targets: Option<Vec<String>> =
                match (&config.dead_letter_topic, &config.dead_letter_exchange) {
                    (Some(dlq), _) => Some(vec![dlq.clone()]),
                    (None, Some(dlx)) => {
                        let key = config
                            .dead_letter_routing_key
                            .as_deref()
                            .unwrap_or(&letter.topic);
                        let topics = &*self.topics;
                        let routed = self
                            .exchanges
                            .route(dlx, key, &headers, |t| topics.contains_key(t));
                        // Never back into the topic it leaves, as a
                        // dead-letter topic cannot be the subscription's own.
                        Some(routed.into_iter().filter(|t| *t != letter.topic).collect())
                    }
                    (None, None) => None,
                };
            // Rejected, expired and dropped messages may go with nowhere to
            // go (the consumer asked for it, their time is up); one
            // delivered too often stays for redelivery.
            let droppable =
                [REASON_REJECTED, REASON_EXPIRED, REASON_MAXLEN].contains(&letter.reason);
            let moved = match targets {
                Some(targets) if !targets.is_empty() => {
                    let copy = message.dead_lettered(headers, self.moment.now_ms);
                    let mut appended = false;
                    for target in targets {
                        if self.append_stored(&target, copy.clone()).is_ok() {
                            appended = true;
                            // A dead letter that pushes a drop-head topic past
                            // its limits drops its head without passing it
                            // on: dead letters never chase each other round.
                            self.drop_head(&target, false, effects);
                            self.dispatch_topic(&target, effects);
                        }
                    }
                    appended
                }
                Some(_) | None => droppable,
            };
            if moved {
                self.ack_moved(&letter);
                moved_count += 1;
            }
        }
        moved_count
    }

    /// Acks a dead letter where it was, now that it moved; a consumer that
    /// held it (one dropped from a full topic's head) gets its credit back.
    fn ack_moved(&mut self, letter: &DeadLetter) {
        let Ok((topic, deadlines, live)) = self.topic_and_books(&letter.topic) else {
            return;
        };
        let mut holder = None;
        if let Some(subscription) = topic.subscriptions.get_mut(&letter.subscription) {
            match letter.reason {
                REASON_EXPIRED => subscription.tally.expired += 1,
                _ => subscription.tally.dead_lettered += 1,
            }
            let mut deadlines = deadlines.of(&letter.topic, &letter.subscription, letter.partition);
            holder =
                subscription.cursors[letter.partition as usize].ack(letter.offset, &mut deadlines);
        }
        topic.trim(live);
        self.refill(holder.into_iter().collect());
    }

    /// Drops the oldest messages of a drop-head topic or a stream until it
    /// is back within its limits and a stream's are young enough
    /// (`Topic::head_to_drop`). With `dead_letter`, each drop-head one
    /// goes first to the dead-letter topic of every subscription that had
    /// not acked it, reason `maxlen`; then every cursor forgets it, and a
    /// consumer that held it gets its credit back (its ack later finds it
    /// acked). Each round drops one message, so this ends.
    pub fn drop_head(&mut self, name: &str, dead_letter: bool, effects: &mut Vec<Effect>) {
        loop {
            let Some(topic) = self.topics.get(name) else {
                return;
            };
            let Some(index) = topic.head_to_drop(self.moment.now_ms) else {
                return;
            };
            let offset = topic.partitions[index].base;
            // A stream's oldest simply go: nobody was owed them.
            if dead_letter && !topic.is_stream() {
                let letters = topic
                    .subscriptions
                    .iter()
                    .filter(|(_, s)| s.cursors[index].standing(offset) != Standing::Acked)
                    .map(|(subscription, _)| DeadLetter {
                        topic: name.to_string(),
                        subscription: subscription.clone(),
                        partition: index as u32,
                        offset,
                        reason: REASON_MAXLEN,
                    })
                    .collect();
                self.dead_letters(letters, effects);
            }
            let Ok((topic, deadlines, live)) = self.topic_and_books(name) else {
                return;
            };
            let mut freed = Vec::new();
            for (subscription_name, subscription) in &mut topic.subscriptions {
                let mut deadlines = deadlines.of(name, subscription_name, index as u32);
                freed.extend(subscription.cursors[index].skip_to(offset + 1, &mut deadlines));
            }
            topic.partitions[index].trim_to(offset + 1, live);
            self.refill(freed);
        }
    }

    /// Dispatches every subscription of a topic.
    pub fn dispatch_topic(&mut self, name: &str, effects: &mut Vec<Effect>) {
        let subscriptions: Vec<String> = self
            .topics
            .get(name)
            .map(|t| t.subscriptions.keys().cloned().collect())
            .unwrap_or_default();
        for subscription in subscriptions {
            self.dispatch(name, &subscription, effects);
        }
    }

    /// Gives each consumer back one unit of credit per message it no longer
    /// holds.
    pub fn refill(&mut self, freed: Vec<ConsumerId>) {
        for id in freed {
            if let Some(consumer) = self.consumers.get_mut(&id) {
                consumer.in_flight -= 1;
            }
        }
    }
}

/// The record of a message published to `topic` in the entry being
/// applied, its body at `slot` there, stamped with the state's time; and
/// when it becomes due, if it is delayed. A delayed message's TTL counts
/// from then (as with RabbitMQ's delayed messages, which reach their
/// queue only then).
fn record(topic: &Topic, message: &NewMessage, slot: u32, moment: Moment) -> (Stored, Option<u64>) {
    let Moment {
        now_ms,
        index,
        term,
    } = moment;
    let key = message.key.as_deref().map(raftmq_rules::key_hash);
    let bytes = u32::try_from(counted_bytes(message)).unwrap_or(u32::MAX);
    let at = BodyRef { index, term, slot };
    let due = message.due_ms(now_ms);
    let ttl_ms = match (topic.ttl_for(message), due) {
        (ttl @ 0, _) | (ttl, None) => ttl,
        (ttl, Some(due)) => {
            u32::try_from(u64::from(ttl).saturating_add(due - now_ms)).unwrap_or(u32::MAX)
        }
    };
    let priority = message
        .properties
        .as_ref()
        .and_then(|p| p.priority)
        .map_or(0, |p| p.min(u32::from(topic.max_priority)) as u8);
    let stored = Stored::new(at, bytes, key, now_ms, ttl_ms).with_priority(priority);
    (stored, due)
}
