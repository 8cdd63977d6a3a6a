//! The whole replicated state and the apply function.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{Command, Effect, Outcome, Rejection, Request, SessionAddr};
use super::limits::*;
use super::subscription::{InFlight, Standing, Subscription};
use super::topic::{Message, NewMessage, Partition, Topic};
use super::{ConsumerId, NodeId};
use crate::planted::{self, Bug};

/// A message handed to a consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub consumer: ConsumerId,
    /// Dense per consumer, from 1.
    pub sequence: u64,
    pub partition: u32,
    pub offset: u64,
    pub message: Message,
    /// Handouts so far, this one included.
    pub attempts: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Consumer {
    topic: String,
    subscription: String,
    session: SessionAddr,
    prefetch: u32,
    /// Messages handed out and not yet acked or returned; never above
    /// `prefetch`.
    in_flight: u32,
    /// The last delivery's sequence number.
    sequence: u64,
}

/// What `ListTopics` shows of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub retained: u64,
    pub subscriptions: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct State {
    version: u32,
    /// The state machine's clock: the highest leader stamp applied so far.
    now_ms: u64,
    topics: BTreeMap<String, Topic>,
    consumers: BTreeMap<ConsumerId, Consumer>,
    next_consumer: ConsumerId,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: MACHINE_VERSION,
            now_ms: 0,
            topics: BTreeMap::new(),
            consumers: BTreeMap::new(),
            next_consumer: 1,
        }
    }
}

type Applied = Result<Outcome, Rejection>;

impl State {
    /// Applies one log entry's commands in order, appending their effects.
    pub fn apply(&mut self, request: Request, effects: &mut Vec<Effect>) -> Vec<Outcome> {
        self.now_ms = self.now_ms.max(request.stamp_ms);
        request
            .commands
            .into_iter()
            .map(|command| {
                self.apply_command(command, effects)
                    .unwrap_or_else(Outcome::Rejected)
            })
            .collect()
    }

    fn apply_command(&mut self, command: Command, effects: &mut Vec<Effect>) -> Applied {
        match command {
            Command::CreateTopic { name, partitions } => self.create_topic(name, partitions),
            Command::Publish { topic, messages } => self.publish(&topic, messages, effects),
            Command::Attach {
                topic,
                subscription,
                prefetch,
                session,
            } => self.attach(topic, subscription, prefetch, session, effects),
            Command::Detach { consumer } => {
                self.detach(consumer, effects);
                Ok(Outcome::Done)
            }
            Command::Ack {
                topic,
                subscription,
                positions,
            } => self.settle(&topic, &subscription, &positions, Settle::Ack, effects),
            Command::Nack {
                topic,
                subscription,
                positions,
            } => self.settle(&topic, &subscription, &positions, Settle::Nack, effects),
            Command::LeaderStarted { node } => {
                self.leader_started(node, effects);
                Ok(Outcome::Done)
            }
        }
    }

    fn create_topic(&mut self, name: String, partitions: u32) -> Applied {
        check_name("topic", &name)?;
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(Rejection::InvalidPartitions {
                got: partitions,
                max: PARTITIONS_MAX,
            });
        }
        if self.topics.contains_key(&name) {
            return Err(Rejection::TopicExists(name));
        }
        check_limit("topics", self.topics.len(), TOPICS_MAX)?;
        self.topics.insert(name, Topic::new(partitions));
        Ok(Outcome::Done)
    }

    fn publish(
        &mut self,
        name: &str,
        messages: Vec<NewMessage>,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        if messages.is_empty() {
            return Err(Rejection::Empty("publish batch".into()));
        }
        let now_ms = if planted::active(Bug::LocalClockInApply) {
            crate::clock::Clock::now_ms(&crate::clock::SystemClock)
        } else {
            self.now_ms
        };
        let topic = self.topic_mut(name)?;
        let positions = messages
            .into_iter()
            .map(|m| {
                let partition = topic.route(m.key.as_deref());
                let offset = topic.partitions[partition as usize].append(Message {
                    key: m.key,
                    payload: m.payload,
                    headers: m.headers,
                    publish_ms: now_ms,
                });
                (partition, offset)
            })
            .collect();
        let subscriptions: Vec<String> = topic.subscriptions.keys().cloned().collect();
        for subscription in subscriptions {
            self.dispatch(name, &subscription, effects);
        }
        Ok(Outcome::Published(positions))
    }

    fn attach(
        &mut self,
        topic_name: String,
        subscription: String,
        prefetch: u32,
        session: SessionAddr,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        check_name("subscription", &subscription)?;
        if prefetch == 0 || prefetch > PREFETCH_MAX {
            return Err(Rejection::InvalidPrefetch {
                got: prefetch,
                max: PREFETCH_MAX,
            });
        }
        check_limit("consumers", self.consumers.len(), CONSUMERS_MAX)?;
        let topic = self
            .topics
            .get_mut(&topic_name)
            .ok_or_else(|| Rejection::UnknownTopic(topic_name.clone()))?;
        if !topic.subscriptions.contains_key(&subscription) {
            check_limit(
                "subscriptions per topic",
                topic.subscriptions.len(),
                SUBSCRIPTIONS_PER_TOPIC_MAX,
            )?;
            let bases = topic.partitions.iter().map(|p| p.base);
            topic
                .subscriptions
                .insert(subscription.clone(), Subscription::at_earliest(bases));
        }
        let id = self.next_consumer;
        self.next_consumer += 1;
        topic
            .subscriptions
            .get_mut(&subscription)
            .expect("inserted above")
            .consumers
            .insert(id);
        self.consumers.insert(
            id,
            Consumer {
                topic: topic_name.clone(),
                subscription: subscription.clone(),
                session,
                prefetch,
                in_flight: 0,
                sequence: 0,
            },
        );
        self.dispatch(&topic_name, &subscription, effects);
        Ok(Outcome::Attached(id))
    }

    fn detach(&mut self, id: ConsumerId, effects: &mut Vec<Effect>) {
        let Some(consumer) = self.consumers.remove(&id) else {
            return; // already detached: detaching is idempotent
        };
        effects.push(Effect::Closed {
            to: consumer.session,
            consumer: id,
        });
        let Some(topic) = self.topics.get_mut(&consumer.topic) else {
            return;
        };
        let Some(subscription) = topic.subscriptions.get_mut(&consumer.subscription) else {
            return;
        };
        subscription.consumers.remove(&id);
        for cursor in &mut subscription.cursors {
            cursor.release(id);
        }
        self.dispatch(&consumer.topic, &consumer.subscription, effects);
    }

    fn leader_started(&mut self, _node: NodeId, effects: &mut Vec<Effect>) {
        let ids: Vec<ConsumerId> = self.consumers.keys().copied().collect();
        for id in ids {
            self.detach(id, effects);
        }
    }

    fn settle(
        &mut self,
        topic_name: &str,
        subscription_name: &str,
        positions: &[(u32, u64)],
        settle: Settle,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        if positions.len() > POSITIONS_PER_COMMAND_MAX {
            return Err(Rejection::LimitReached {
                what: "positions per ack".into(),
                max: POSITIONS_PER_COMMAND_MAX,
            });
        }
        let topic = self.topic_mut(topic_name)?;
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
            let cursor = subscription.cursors.get(partition as usize).ok_or(
                Rejection::UnknownPartition {
                    partition,
                    partitions,
                },
            )?;
            let end = topic.partitions[partition as usize].end();
            let standing = cursor.standing(offset);
            match (settle, standing) {
                _ if offset >= end => return Err(Rejection::NoSuchMessage { partition, offset }),
                (_, Standing::NeverDelivered) => {
                    return Err(Rejection::NotDelivered { partition, offset })
                }
                (Settle::Nack, Standing::Acked | Standing::Returned) => {
                    return Err(Rejection::NotInFlight { partition, offset })
                }
                _ => {}
            }
        }
        let mut freed: Vec<ConsumerId> = Vec::new();
        let dropped = usize::from(settle == Settle::Ack && planted::active(Bug::AckDropsLast));
        for &(partition, offset) in &positions[..positions.len().saturating_sub(dropped)] {
            let cursor = &mut subscription.cursors[partition as usize];
            let holder = match settle {
                Settle::Ack => cursor.ack(offset),
                Settle::Nack => cursor.give_back(offset, true),
            };
            freed.extend(holder);
        }
        topic.trim();
        for id in freed {
            if let Some(consumer) = self.consumers.get_mut(&id) {
                consumer.in_flight -= 1;
            }
        }
        self.dispatch(topic_name, subscription_name, effects);
        Ok(Outcome::Done)
    }

    /// Hands messages to the subscription's active consumer while it has
    /// credit (prefetch minus in flight): returned messages first, then new
    /// offsets, one partition after another in a round.
    fn dispatch(&mut self, topic_name: &str, subscription_name: &str, effects: &mut Vec<Effect>) {
        let Some(topic) = self.topics.get_mut(topic_name) else {
            return;
        };
        let Some(subscription) = topic.subscriptions.get_mut(subscription_name) else {
            return;
        };
        let Some(id) = subscription.active_consumer() else {
            return;
        };
        let Some(consumer) = self.consumers.get_mut(&id) else {
            return;
        };
        let count = topic.partitions.len() as u32;
        // Each pass hands out at most one message, and at most `prefetch`
        // passes can succeed: the loop is bounded by prefetch x partitions.
        let credit = consumer.prefetch + u32::from(planted::active(Bug::PrefetchPlusOne));
        'credit: while consumer.in_flight < credit {
            for step in 0..count {
                let index = ((subscription.next_partition + step) % count) as usize;
                let partition = &topic.partitions[index];
                let cursor = &mut subscription.cursors[index];
                let Some((offset, mut counts)) =
                    cursor.take_next(partition.end(), DISPATCH_WINDOW_MAX)
                else {
                    continue;
                };
                let message = partition
                    .get(offset)
                    .expect("offsets at or above the ack floor are retained")
                    .clone();
                if planted::active(Bug::SkipMessage) && message.key.is_none() && offset % 8 == 0 {
                    cursor.ack(offset);
                    continue 'credit;
                }
                counts.attempts += 1;
                cursor.in_flight.insert(
                    offset,
                    InFlight {
                        consumer: id,
                        counts,
                    },
                );
                consumer.in_flight += 1;
                consumer.sequence += 1;
                subscription.next_partition = (index as u32 + 1) % count;
                effects.push(Effect::Deliver {
                    to: consumer.session,
                    delivery: Delivery {
                        consumer: id,
                        sequence: consumer.sequence,
                        partition: index as u32,
                        offset,
                        message,
                        attempts: counts.attempts,
                    },
                });
                continue 'credit;
            }
            break;
        }
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut Topic, Rejection> {
        self.topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.into()))
    }

    pub fn topics(&self) -> Vec<TopicSummary> {
        self.topics
            .iter()
            .map(|(name, topic)| TopicSummary {
                name: name.clone(),
                partitions: topic.partition_count(),
                retained: topic
                    .partitions
                    .iter()
                    .map(|p| p.messages.len() as u64)
                    .sum(),
                subscriptions: topic.subscriptions.keys().cloned().collect(),
            })
            .collect()
    }

    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(Topic::partition_count)
    }

    /// Unacknowledged messages a consumer holds, as the server counts them.
    pub fn consumer_in_flight(&self, id: ConsumerId) -> Option<u32> {
        self.consumers.get(&id).map(|c| c.in_flight)
    }

    /// A partition's retained messages, for replica comparisons.
    pub fn partition(&self, topic: &str, index: u32) -> Option<&Partition> {
        self.topics.get(topic)?.partitions.get(index as usize)
    }

    /// Checks the state's internal bookkeeping: every consumer's in-flight
    /// count matches the cursors and stays within its prefetch, and every
    /// cursor's sets lie where they belong. A simulation calls it after
    /// every step on every replica.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held: BTreeMap<ConsumerId, u32> = BTreeMap::new();
        for (name, topic) in &self.topics {
            for (sub_name, subscription) in &topic.subscriptions {
                for (index, cursor) in subscription.cursors.iter().enumerate() {
                    let at = || format!("{name}/{sub_name}/{index}");
                    let partition = &topic.partitions[index];
                    if cursor.floor > cursor.next || cursor.next > partition.end() {
                        return Err(format!(
                            "{}: floor {} next {} end {}",
                            at(),
                            cursor.floor,
                            cursor.next,
                            partition.end()
                        ));
                    }
                    if cursor.floor < partition.base {
                        return Err(format!(
                            "{}: floor {} below retained base {}",
                            at(),
                            cursor.floor,
                            partition.base
                        ));
                    }
                    let in_range = |offset: &u64| (cursor.floor..cursor.next).contains(offset);
                    let stray = cursor
                        .acked
                        .iter()
                        .chain(cursor.in_flight.keys())
                        .chain(cursor.returned.keys())
                        .find(|offset| !in_range(offset));
                    if let Some(offset) = stray {
                        return Err(format!(
                            "{}: offset {offset} tracked outside [floor, next)",
                            at()
                        ));
                    }
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

    /// Every attached consumer with the session its deliveries go to.
    pub fn consumer_sessions(&self) -> Vec<(ConsumerId, SessionAddr)> {
        self.consumers
            .iter()
            .map(|(id, c)| (*id, c.session))
            .collect()
    }

    /// Consumers attached, cluster wide.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// The rules version this state was built under.
    pub fn version(&self) -> u32 {
        self.version
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack,
}

fn check_name(what: &str, name: &str) -> Result<(), Rejection> {
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Rejection::InvalidName {
            what: what.into(),
            name: name.into(),
        })
    }
}

fn check_limit(what: &str, count: usize, max: usize) -> Result<(), Rejection> {
    if count >= max {
        Err(Rejection::LimitReached {
            what: what.into(),
            max,
        })
    } else {
        Ok(())
    }
}
