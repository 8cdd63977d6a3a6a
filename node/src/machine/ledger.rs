//! The topics and the consumers as one command changes them, at one moment:
//! the moves several commands are made of (append, dispatch, give credit
//! back). Applying (`state.rs`) and settling (`settle.rs`) both build on
//! them; they know neither.

use std::collections::BTreeMap;

use super::consumer::Consumer;
use super::deadlines::Deadlines;
use super::dispatch::{self, Moment};
use super::effect::Effect;
use super::ids::ConsumerId;
use super::live::LiveBodies;
use super::quirks::{self, Quirk};
use super::rejection::Rejection;
use super::topic::{counted_bytes, BodyRef, NewMessage, Stored, Topic};

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
        let Moment {
            now_ms,
            index,
            term,
        } = self.moment;
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
                let key = m.key.as_deref().map(raftmq_rules::key_hash);
                let bytes = u32::try_from(counted_bytes(m)).unwrap_or(u32::MAX);
                let stored = Stored::new(BodyRef { index, term, slot }, bytes, key, now_ms);
                topic.store(stored, self.live)
            })
            .collect();
        if reversed {
            positions.reverse();
        }
        Ok(positions)
    }

    /// Appends a message already stored elsewhere (a dead letter): its
    /// body stays where it is.
    pub fn append_stored(&mut self, name: &str, stored: Stored) -> Result<(u32, u64), Rejection> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.into()))?;
        topic.admit(name, 1, u64::from(stored.bytes))?;
        Ok(topic.store(stored, self.live))
    }

    /// Hands out what the subscription's consumers have credit for.
    pub fn dispatch(
        &mut self,
        topic_name: &str,
        subscription_name: &str,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(topic) = self.topics.get_mut(topic_name) {
            dispatch::dispatch(
                topic_name,
                topic,
                subscription_name,
                self.consumers,
                self.deadlines,
                self.moment,
                effects,
            );
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
