//! The whole replicated state and the apply function.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checks::{check_limit, check_name};
use super::command::{Command, Outcome, Request};
use super::consumer::{Consumer, SessionAddr};
use super::deadlines::Deadlines;
use super::dispatch::Moment;
use super::effect::Effect;
use super::exchange::{check_routing_key, ExchangeSummary, Exchanges};
use super::ids::{ConsumerId, EntryId, NodeId};
use super::ledger::Ledger;
use super::lifetime::{Expiries, Lifetime, SERVER_NAMED_PREFIX};
use super::limits::*;
use super::live::{Held, LiveBodies};
use super::producers::{ProducerTag, Verdict};
use super::rejection::Rejection;
use super::settle::{self, Settle};
use super::stats::TopicStats;
use super::subscription::{Mode, Subscription, SubscriptionConfig};
use super::topic::{self, BodyRef, NewMessage, Partition, Retention, Topic, TopicLimits};

/// What `ListTopics` shows of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub retained: u64,
    pub subscriptions: Vec<String>,
}

/// Decoded through `Stored`, which rebuilds what is derived.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(from = "Stored")]
pub struct State {
    version: u32,
    /// The state machine's clock: the highest leader stamp applied so far.
    pub(super) now_ms: u64,
    pub(super) topics: BTreeMap<String, Topic>,
    pub(super) consumers: BTreeMap<ConsumerId, Consumer>,
    next_consumer: ConsumerId,
    pub(super) exchanges: Exchanges,
    /// How many topics the server has named (`SERVER_NAMED_PREFIX`).
    server_named: u64,
    /// Every deadline the topics' cursors imply, by time: derived from
    /// them, so not stored but rebuilt when a snapshot is decoded.
    #[serde(skip)]
    pub(super) deadlines: Deadlines,
    /// The log entries holding retained bodies: derived from the
    /// partitions, so rebuilt when a snapshot is decoded.
    #[serde(skip)]
    pub(super) live: LiveBodies,
    /// When each expiring topic goes: derived from the topics, so rebuilt
    /// when a snapshot is decoded.
    #[serde(skip)]
    pub(super) expiries: Expiries,
    /// The log entry being applied, index 0 outside `apply`; not part of
    /// the state.
    #[serde(skip)]
    applying: EntryId,
}

/// What a snapshot holds of `State`: the fields it serializes, in the same
/// order (postcard encodes fields by position, not by name).
#[derive(Deserialize)]
struct Stored {
    version: u32,
    now_ms: u64,
    topics: BTreeMap<String, Topic>,
    consumers: BTreeMap<ConsumerId, Consumer>,
    next_consumer: ConsumerId,
    exchanges: Exchanges,
    server_named: u64,
}

impl From<Stored> for State {
    fn from(stored: Stored) -> Self {
        let mut state = State {
            version: stored.version,
            now_ms: stored.now_ms,
            topics: stored.topics,
            consumers: stored.consumers,
            next_consumer: stored.next_consumer,
            exchanges: stored.exchanges,
            server_named: stored.server_named,
            expiries: Expiries::default(),
            deadlines: Deadlines::default(),
            live: LiveBodies::default(),
            applying: EntryId::default(),
        };
        state.deadlines = state.implied_deadlines();
        state.live = state.implied_live();
        state.expiries = state.implied_expiries();
        state
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            version: MACHINE_VERSION,
            now_ms: 0,
            topics: BTreeMap::new(),
            consumers: BTreeMap::new(),
            next_consumer: 1,
            exchanges: Exchanges::default(),
            server_named: 0,
            expiries: Expiries::default(),
            deadlines: Deadlines::default(),
            live: LiveBodies::default(),
            applying: EntryId::default(),
        }
    }
}

type Applied = Result<Outcome, Rejection>;

impl State {
    /// Applies one log entry's commands in order, appending their effects.
    /// `entry` is the entry's log index and term: deliveries carry the
    /// index, so that a client can order a delivery against an ack
    /// (`AckResponse.applied_at`), and the messages it publishes stay in
    /// it (`BodyRef`), so the state keeps no body.
    pub fn apply(
        &mut self,
        entry: EntryId,
        request: &Request,
        effects: &mut Vec<Effect>,
    ) -> Vec<Outcome> {
        self.now_ms = self.now_ms.max(request.stamp_ms);
        self.applying = entry;
        let outcomes = request
            .commands_with_first_slot()
            .map(|(command, first_slot)| {
                self.apply_command(command, first_slot, effects)
                    .unwrap_or_else(Outcome::Rejected)
            })
            .collect();
        // Only meaningful during apply: outside it the state is only what
        // the log made it.
        self.applying = EntryId::default();
        outcomes
    }

    /// `first_slot`: where a publish's first message is among the entry's
    /// (`Request::published`).
    fn apply_command(
        &mut self,
        command: &Command,
        first_slot: u32,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        match command {
            Command::CreateTopic {
                name,
                partitions,
                limits,
                message_ttl_ms,
                fail_if_exists,
                owner,
                expires_ms,
                max_priority,
                retention,
            } => {
                let lifetime = Lifetime {
                    owner: *owner,
                    expires_ms: *expires_ms,
                    unused_since_ms: None,
                };
                self.create_topic(
                    name,
                    *partitions,
                    *limits,
                    *message_ttl_ms,
                    *fail_if_exists,
                    lifetime,
                    (*max_priority, *retention),
                )
            }
            Command::DeleteTopic {
                name,
                if_unused,
                if_empty,
            } => self.delete_topic(name, *if_unused, *if_empty, effects),
            Command::DeleteSubscription {
                topic,
                subscription,
            } => self.delete_subscription(topic, subscription, effects),
            Command::Publish {
                topic,
                messages,
                producer,
            } => self.publish(topic, messages, first_slot, *producer, effects),
            Command::DeclareExchange {
                name,
                kind,
                alternate,
                fail_if_exists,
            } => {
                let alternate = alternate.as_deref();
                let created = self
                    .exchanges
                    .declare(name, *kind, alternate, *fail_if_exists)?;
                let name = name.clone();
                Ok(Outcome::Declared { created, name })
            }
            Command::DeleteExchange { name, if_unused } => {
                self.exchanges.delete(name, *if_unused)?;
                Ok(Outcome::Done)
            }
            Command::Bind { exchange, binding } => {
                if !self.topics.contains_key(&binding.topic) {
                    return Err(Rejection::UnknownTopic(binding.topic.clone()));
                }
                self.exchanges.bind(exchange, binding.clone())?;
                Ok(Outcome::Done)
            }
            Command::Unbind { exchange, binding } => {
                self.exchanges.unbind(exchange, binding)?;
                Ok(Outcome::Done)
            }
            Command::PublishTo {
                exchange,
                routing_key,
                messages,
            } => self.publish_to(exchange, routing_key, messages, first_slot, effects),
            Command::Attach {
                topic,
                subscription,
                prefetch,
                session,
                config,
                client,
            } => {
                let admitted = self.topics.get(topic).map(|t| t.lifetime.admits(*client));
                if admitted == Some(false) {
                    return Err(Rejection::Exclusive(topic.clone()));
                }
                self.attach(
                    topic.clone(),
                    subscription.clone(),
                    *prefetch,
                    *session,
                    config.clone(),
                    effects,
                )
            }
            Command::Detach { consumer } => {
                self.detach(*consumer, effects);
                Ok(Outcome::Done)
            }
            Command::Ack {
                topic,
                subscription,
                positions,
            } => self.settle(topic, subscription, positions, Settle::Ack, effects),
            Command::Nack {
                topic,
                subscription,
                positions,
                requeue,
                delay_ms,
            } => {
                let how = Settle::Nack {
                    requeue: *requeue,
                    delay_ms: *delay_ms,
                };
                self.settle(topic, subscription, positions, how, effects)
            }
            Command::Tick => {
                settle::tick(&mut self.ledger(), effects);
                self.expire_topics(effects);
                self.age_streams(effects);
                Ok(Outcome::Done)
            }
            Command::LeaderStarted { node } => {
                self.leader_started(*node, effects);
                Ok(Outcome::Done)
            }
            Command::Relocate { from, messages } => self.relocate(from, messages.len(), first_slot),
        }
    }

    /// Points every retained record whose body is at `from[i]` at slot
    /// `first_slot + i` of the entry being applied. One pass over the
    /// retained records: the compactor proposes it only when it frees far
    /// more log than it copies.
    fn relocate(&mut self, from: &[BodyRef], bodies: usize, first_slot: u32) -> Applied {
        if from.len() != bodies {
            return Err(Rejection::Invalid(format!(
                "relocate: {} bodies for {} places",
                bodies,
                from.len()
            )));
        }
        let Some(newest) = from.iter().map(|body| body.index).max() else {
            return Err(Rejection::Empty("relocate".into()));
        };
        let entry = self.applying;
        let to: BTreeMap<BodyRef, BodyRef> = (0u32..)
            .zip(from)
            .map(|(i, old)| {
                let new = BodyRef {
                    index: entry.index,
                    term: entry.term,
                    slot: first_slot + i,
                };
                (*old, new)
            })
            .collect();
        let live = &mut self.live;
        let moved = |m: &topic::Stored| m.body().index <= newest && to.contains_key(&m.body());
        for partition in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
            partition.messages.change(moved, |message| {
                let new = to[&message.body()];
                live.release(message.body().index, message.bytes);
                live.hold(new.index, message.bytes);
                message.set_body(new);
            });
        }
        Ok(Outcome::Done)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        limits: TopicLimits,
        message_ttl_ms: u32,
        fail_if_exists: bool,
        mut lifetime: Lifetime,
        (max_priority, retention): (u8, Retention),
    ) -> Applied {
        let server_named = name.is_empty();
        let name = if server_named {
            // Unique for good: the counter only grows (once the declare is
            // accepted, below), and a name with the prefix cannot be
            // declared (the prefix is reserved).
            format!("{SERVER_NAMED_PREFIX}{}", self.server_named + 1)
        } else if name.starts_with(SERVER_NAMED_PREFIX) && !self.topics.contains_key(name) {
            return Err(Rejection::Invalid(format!(
                "topic names starting {SERVER_NAMED_PREFIX:?} are the server's to give"
            )));
        } else {
            name.to_string()
        };
        check_name("topic", &name)?;
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(Rejection::InvalidPartitions {
                got: partitions,
                max: PARTITIONS_MAX,
            });
        }
        if max_priority > PRIORITY_MAX {
            return Err(Rejection::Invalid(format!(
                "max_priority {max_priority}: at most {PRIORITY_MAX}"
            )));
        }
        let lanes = u64::from(partitions) * (u64::from(max_priority) + 1);
        if lanes > u64::from(PARTITIONS_MAX) {
            return Err(Rejection::Invalid(format!(
                "{partitions} partitions at {} priority levels make {lanes} lanes; at most {PARTITIONS_MAX}",
                u32::from(max_priority) + 1
            )));
        }
        if let Some(existing) = self.topics.get_mut(&name) {
            if fail_if_exists {
                return Err(Rejection::TopicExists(name));
            }
            if existing.lifetime.owner.is_some() && existing.lifetime.owner != lifetime.owner {
                return Err(Rejection::Exclusive(name));
            }
            let settings = [
                (
                    "partitions",
                    existing.key_partitions().to_string(),
                    partitions.to_string(),
                ),
                (
                    "max_priority",
                    existing.max_priority.to_string(),
                    max_priority.to_string(),
                ),
                (
                    "retention",
                    format!("{:?}", existing.retention),
                    format!("{retention:?}"),
                ),
                (
                    "max_messages",
                    existing.limits.max_messages.to_string(),
                    limits.max_messages.to_string(),
                ),
                (
                    "max_bytes",
                    existing.limits.max_bytes.to_string(),
                    limits.max_bytes.to_string(),
                ),
                (
                    "overflow",
                    existing.limits.overflow.name().to_string(),
                    limits.overflow.name().to_string(),
                ),
                (
                    "message_ttl_ms",
                    existing.message_ttl_ms.to_string(),
                    message_ttl_ms.to_string(),
                ),
                (
                    "exclusive",
                    existing.lifetime.owner.is_some().to_string(),
                    lifetime.owner.is_some().to_string(),
                ),
                (
                    "expires_ms",
                    existing.lifetime.expires_ms.to_string(),
                    lifetime.expires_ms.to_string(),
                ),
            ];
            if let Some((setting, had, asked)) =
                settings.into_iter().find(|(_, had, asked)| had != asked)
            {
                return Err(Rejection::SettingMismatch {
                    what: "topic".into(),
                    name,
                    setting: setting.into(),
                    existing: had,
                    asked,
                });
            }
            self.expiries
                .restart(&name, &mut existing.lifetime, self.now_ms);
            return Ok(Outcome::Declared {
                created: false,
                name,
            });
        }
        check_limit("topics", self.topics.len(), TOPICS_MAX)?;
        if server_named {
            self.server_named += 1;
        }
        // No consumer yet: an expiring topic's clock starts now.
        self.expiries.update(&name, &mut lifetime, 0, self.now_ms);
        let topic = Topic::new(
            partitions,
            limits,
            message_ttl_ms,
            lifetime,
            max_priority,
            retention,
        );
        self.topics.insert(name.clone(), topic);
        Ok(Outcome::Declared {
            created: true,
            name,
        })
    }

    /// Drops the messages streams keep no longer: those older than their
    /// `max_age_ms`. One pass over the topics, at a tick.
    fn age_streams(&mut self, effects: &mut Vec<Effect>) {
        let now_ms = self.now_ms;
        let aged: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| t.next_aging().is_some_and(|at| at <= now_ms))
            .map(|(name, _)| name.clone())
            .collect();
        let mut ledger = self.ledger();
        for name in aged {
            ledger.drop_head(&name, false, effects);
            ledger.dispatch_topic(&name, effects);
        }
    }

    /// Deletes the topics whose time without a consumer ran out.
    fn expire_topics(&mut self, effects: &mut Vec<Effect>) {
        for name in self.expiries.due(self.now_ms) {
            let _ = self.delete_topic(&name, false, false, effects);
        }
    }

    /// Keeps an expiring topic's clock in step with its consumers: called
    /// wherever consumers come or go.
    fn track_usage(&mut self, name: &str) {
        if let Some(topic) = self.topics.get_mut(name) {
            let consumers = topic.consumer_count();
            self.expiries
                .update(name, &mut topic.lifetime, consumers, self.now_ms);
        }
    }

    fn delete_topic(
        &mut self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.to_string()))?;
        let consumers = topic.consumer_count();
        if if_unused && consumers > 0 {
            return Err(Rejection::InUse {
                topic: name.to_string(),
                consumers,
            });
        }
        let messages: u64 = topic
            .partitions
            .iter()
            .map(|p| p.messages.len() as u64)
            .sum();
        if if_empty && messages > 0 {
            return Err(Rejection::NotEmpty {
                topic: name.to_string(),
                messages,
            });
        }
        let subscriptions: Vec<String> = topic.subscriptions.keys().cloned().collect();
        for subscription in subscriptions {
            self.forget_subscription(name, &subscription, effects);
        }
        let topic = self.topics.remove(name).expect("looked up above");
        self.expiries.forget(name, &topic.lifetime);
        self.exchanges.unbind_topic(name);
        for message in topic.partitions.iter().flat_map(|p| p.messages.iter()) {
            self.live.release(message.body().index, message.bytes);
        }
        Ok(Outcome::Deleted { messages })
    }

    fn delete_subscription(
        &mut self,
        topic: &str,
        subscription: &str,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        let known = self
            .topics
            .get(topic)
            .ok_or_else(|| Rejection::UnknownTopic(topic.to_string()))?
            .subscriptions
            .contains_key(subscription);
        if !known {
            return Err(Rejection::UnknownSubscription {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
            });
        }
        self.forget_subscription(topic, subscription, effects);
        self.track_usage(topic);
        if let Some(topic) = self.topics.get_mut(topic) {
            topic.trim(&mut self.live);
        }
        Ok(Outcome::Done)
    }

    /// Removes a subscription that exists: its consumers go (their streams
    /// close) and so do its cursors' deadlines.
    fn forget_subscription(&mut self, topic: &str, subscription: &str, effects: &mut Vec<Effect>) {
        let Some(removed) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.subscriptions.remove(subscription))
        else {
            return;
        };
        for id in &removed.consumers {
            if let Some(consumer) = self.consumers.remove(id) {
                effects.push(Effect::Closed {
                    to: consumer.session,
                    consumer: *id,
                });
            }
        }
        for (partition, cursor) in removed.cursors.iter().enumerate() {
            let mut deadlines = self.deadlines.of(topic, subscription, partition as u32);
            for (at_ms, due, offset) in cursor.deadlines() {
                deadlines.clear(at_ms, due, offset);
            }
        }
    }

    fn publish(
        &mut self,
        name: &str,
        messages: &[NewMessage],
        first_slot: u32,
        producer: Option<ProducerTag>,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        if messages.is_empty() {
            return Err(Rejection::Empty("publish batch".into()));
        }
        let mut ledger = self.ledger();
        if let Some(tag) = producer {
            let verdict = ledger
                .topic_mut(name)?
                .producers
                .judge(tag, messages.len())?;
            if let Verdict::Repeat(positions) = verdict {
                return Ok(Outcome::Published(positions));
            }
        }
        let positions = ledger.append(name, messages, first_slot)?;
        if let Some(tag) = producer {
            let now_ms = ledger.moment.now_ms;
            ledger
                .topic_mut(name)?
                .producers
                .record(tag, positions.clone(), now_ms);
        }
        ledger.drop_head(name, true, effects);
        ledger.dispatch_topic(name, effects);
        Ok(Outcome::Published(positions))
    }

    /// Routes each message (`Exchanges::route`) and appends it to every
    /// topic it goes to, its body stored once in this entry. A message that
    /// goes nowhere is counted on the exchange; the grpc layer returns it
    /// to a `mandatory` publisher.
    fn publish_to(
        &mut self,
        exchange: &str,
        routing_key: &str,
        messages: &[NewMessage],
        first_slot: u32,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        if messages.is_empty() {
            return Err(Rejection::Empty("publish batch".into()));
        }
        check_routing_key(routing_key)?;
        self.exchanges.check_exists(exchange)?;
        let topics = &self.topics;
        let routes: Vec<BTreeSet<String>> = messages
            .iter()
            .map(|message| {
                self.exchanges
                    .route(exchange, routing_key, &message.headers, |topic| {
                        topics.contains_key(topic)
                    })
            })
            .collect();
        let mut ledger = self.ledger();
        let placements = ledger.append_routed(messages, &routes, first_slot)?;
        let reached: BTreeSet<&String> = routes.iter().flatten().collect();
        for topic in reached {
            ledger.drop_head(topic, true, effects);
            ledger.dispatch_topic(topic, effects);
        }
        let unroutable = placements.iter().filter(|p| p.is_empty()).count();
        self.exchanges.count_unroutable(exchange, unroutable as u64);
        Ok(Outcome::Routed(placements))
    }

    fn settle(
        &mut self,
        topic: &str,
        subscription: &str,
        positions: &[(u32, u64)],
        how: Settle,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        settle::settle(
            &mut self.ledger(),
            topic,
            subscription,
            positions,
            how,
            effects,
        )?;
        Ok(Outcome::Done)
    }

    fn attach(
        &mut self,
        topic_name: String,
        subscription: String,
        prefetch: u32,
        session: SessionAddr,
        config: Option<SubscriptionConfig>,
        effects: &mut Vec<Effect>,
    ) -> Applied {
        check_name("subscription", &subscription)?;
        if let Some(config) = &config {
            self.check_subscription_config(&topic_name, config)?;
        }
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
            let config = config.clone().unwrap_or_default();
            let start = config.start;
            let offsets = topic.partitions.iter().map(|p| p.start_offset(start));
            let created = Subscription::starting_at(config, offsets);
            topic.subscriptions.insert(subscription.clone(), created);
        }
        let existing = topic
            .subscriptions
            .get_mut(&subscription)
            .expect("inserted above");
        if let Some(config) = config.filter(|c| c.mode != existing.config.mode) {
            return Err(Rejection::ModeMismatch {
                subscription,
                existing: format!("{:?}", existing.config.mode),
                asked: format!("{:?}", config.mode),
            });
        }
        if existing.config.mode == Mode::Exclusive && !existing.consumers.is_empty() {
            return Err(Rejection::ConsumerBusy(subscription));
        }
        let id = self.next_consumer;
        self.next_consumer += 1;
        existing.consumers.insert(id);
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
        self.track_usage(&topic_name);
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
        for (partition, cursor) in subscription.cursors.iter_mut().enumerate() {
            let mut deadlines =
                self.deadlines
                    .of(&consumer.topic, &consumer.subscription, partition as u32);
            cursor.release(id, &mut deadlines);
        }
        self.track_usage(&consumer.topic);
        self.dispatch(&consumer.topic, &consumer.subscription, effects);
    }

    fn leader_started(&mut self, _node: NodeId, effects: &mut Vec<Effect>) {
        let ids: Vec<ConsumerId> = self.consumers.keys().copied().collect();
        for id in ids {
            self.detach(id, effects);
        }
    }

    /// The topics and consumers at this moment, for the moves commands
    /// share.
    fn ledger(&mut self) -> Ledger<'_> {
        Ledger {
            topics: &mut self.topics,
            consumers: &mut self.consumers,
            deadlines: &mut self.deadlines,
            live: &mut self.live,
            exchanges: &self.exchanges,
            moment: Moment {
                now_ms: self.now_ms,
                index: self.applying.index,
                term: self.applying.term,
            },
        }
    }

    /// Hands out what the subscription's consumers have credit for.
    fn dispatch(&mut self, topic: &str, subscription: &str, effects: &mut Vec<Effect>) {
        self.ledger().dispatch(topic, subscription, effects);
    }

    /// The earliest time a tick has work: an ack deadline or a delayed
    /// redelivery. The leader appends a tick only then, never periodically.
    /// The first entry of the deadline index: O(log n), whatever exists.
    /// The state machine's time: the highest leader stamp applied.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The earliest time something is due: a cursor's deadline, a topic's
    /// expiry, or a stream's oldest message growing too old (a pass over
    /// the topics: at most `TOPICS_MAX`).
    pub fn next_deadline(&self) -> Option<u64> {
        let cursors = self.deadlines.next();
        let topics = self.expiries.next();
        let aging = self.topics.values().filter_map(Topic::next_aging).min();
        cursors.into_iter().chain(topics).chain(aging).min()
    }

    /// Every expiring topic's time, as the topics' lifetimes imply: what
    /// the index must hold. Decoding rebuilds it; `check_invariants`
    /// compares.
    pub(super) fn implied_expiries(&self) -> Expiries {
        let mut expiries = Expiries::default();
        for (name, topic) in &self.topics {
            expiries.insert(name, &topic.lifetime);
        }
        expiries
    }

    /// The deadlines the topics' cursors imply: what the index must hold.
    /// Decoding rebuilds the index from it; `check_invariants` compares.
    pub(super) fn implied_deadlines(&self) -> Deadlines {
        let mut deadlines = Deadlines::default();
        for (topic_name, topic) in &self.topics {
            for (subscription_name, subscription) in &topic.subscriptions {
                for (partition, cursor) in subscription.cursors.iter().enumerate() {
                    let mut own = deadlines.of(topic_name, subscription_name, partition as u32);
                    for (at_ms, due, offset) in cursor.deadlines() {
                        own.set(at_ms, due, offset);
                    }
                }
            }
        }
        deadlines
    }

    /// The log entries holding retained bodies, as the partitions imply
    /// them. Decoding builds the index from it; `check_invariants`
    /// compares.
    pub(super) fn implied_live(&self) -> LiveBodies {
        let mut live = LiveBodies::default();
        for topic in self.topics.values() {
            for message in topic.partitions.iter().flat_map(|p| p.messages.iter()) {
                live.hold(message.body().index, message.bytes);
            }
        }
        live
    }

    /// The oldest log entry a retained message's body is in: the log must
    /// keep it and every later entry.
    pub fn oldest_body(&self) -> Option<u64> {
        self.live.oldest()
    }

    /// The log entries holding retained bodies, oldest first.
    pub fn live_bodies(&self) -> impl Iterator<Item = (u64, Held)> + '_ {
        self.live.entries()
    }

    /// Every body of a retained message in an entry below `below`, once
    /// each: what a relocation must copy to free those entries.
    pub fn bodies_below(&self, below: u64) -> BTreeSet<BodyRef> {
        self.topics
            .values()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| p.messages.iter())
            .map(topic::Stored::body)
            .filter(|body| body.index < below)
            .collect()
    }

    /// Messages retained, over every topic.
    pub fn retained(&self) -> u64 {
        self.topics
            .values()
            .flat_map(|t| &t.partitions)
            .map(|p| p.messages.len() as u64)
            .sum()
    }

    pub fn exchanges(&self) -> Vec<ExchangeSummary> {
        self.exchanges.summaries()
    }

    /// Depths, in-flight counts and totals of every topic.
    pub fn topic_stats(&self) -> Vec<TopicStats> {
        self.topics
            .iter()
            .map(|(name, topic)| TopicStats::of(name, topic))
            .collect()
    }

    pub fn topics(&self) -> Vec<TopicSummary> {
        self.topics
            .iter()
            .map(|(name, topic)| TopicSummary {
                name: name.clone(),
                partitions: topic.key_partitions(),
                retained: topic
                    .partitions
                    .iter()
                    .map(|p| p.messages.len() as u64)
                    .sum(),
                subscriptions: topic.subscriptions.keys().cloned().collect(),
            })
            .collect()
    }

    /// Unacknowledged messages a consumer holds, as the server counts them.
    pub fn consumer_in_flight(&self, id: ConsumerId) -> Option<u32> {
        self.consumers.get(&id).map(|c| c.in_flight)
    }

    /// A partition's retained messages, for replica comparisons.
    pub fn partition(&self, topic: &str, index: u32) -> Option<&Partition> {
        self.topics.get(topic)?.partitions.get(index as usize)
    }

    /// Checks a new subscription's settings: the dead-letter topic must exist
    /// and a delivery limit needs one.
    fn check_subscription_config(
        &self,
        topic: &str,
        config: &SubscriptionConfig,
    ) -> Result<(), Rejection> {
        match (&config.dead_letter_topic, &config.dead_letter_exchange) {
            (Some(_), Some(_)) => Err(Rejection::Invalid(
                "a dead_letter_topic or a dead_letter_exchange, not both".into(),
            )),
            (Some(dlq), None) if dlq == topic => Err(Rejection::Invalid(
                "the dead-letter topic cannot be the subscription's own topic".into(),
            )),
            (Some(dlq), None) if !self.topics.contains_key(dlq) => {
                Err(Rejection::UnknownTopic(dlq.clone()))
            }
            (None, Some(dlx)) => self.exchanges.check_exists(dlx),
            (None, None) if config.max_deliveries > 0 => Err(Rejection::Invalid(
                "max_deliveries needs a dead_letter_topic or a dead_letter_exchange".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Every attached consumer with the session its deliveries go to.
    pub fn consumer_sessions(&self) -> Vec<(ConsumerId, SessionAddr)> {
        self.consumers
            .iter()
            .map(|(id, c)| (*id, c.session))
            .collect()
    }

    /// Every consumer with its unacknowledged count and prefetch, as the
    /// server counts them.
    pub fn consumer_credit(&self) -> Vec<(ConsumerId, u32, u32)> {
        self.consumers
            .iter()
            .map(|(id, c)| (*id, c.in_flight, c.prefetch))
            .collect()
    }

    /// Consumers attached, cluster wide.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }
}
