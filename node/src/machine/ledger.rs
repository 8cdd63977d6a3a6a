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
use super::quirks::{self, Quirk};
use super::rejection::Rejection;
use super::topic::{Message, NewMessage, Topic};

/// A view of the state's topics, consumers and deadlines during one
/// command.
pub(super) struct Ledger<'a> {
    pub topics: &'a mut BTreeMap<String, Topic>,
    pub consumers: &'a mut BTreeMap<ConsumerId, Consumer>,
    /// The topics' deadlines, kept in step by every cursor move.
    pub deadlines: &'a mut Deadlines,
    /// The state machine's time and the log index being applied.
    pub moment: Moment,
}

impl Ledger<'_> {
    pub fn topic_mut(&mut self, name: &str) -> Result<&mut Topic, Rejection> {
        self.topic_and_deadlines(name).map(|(topic, _)| topic)
    }

    /// A topic, and the deadlines its cursors' moves keep in step.
    pub fn topic_and_deadlines(
        &mut self,
        name: &str,
    ) -> Result<(&mut Topic, &mut Deadlines), Rejection> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.into()))?;
        Ok((topic, &mut *self.deadlines))
    }

    /// Appends messages to a topic, stamped with the state machine's time.
    pub fn append(
        &mut self,
        name: &str,
        mut messages: Vec<NewMessage>,
    ) -> Result<Vec<(u32, u64)>, Rejection> {
        let publish_ms = self.moment.now_ms;
        let topic = self.topic_mut(name)?;
        topic.admit(name, &messages)?;
        let reversed = quirks::on(Quirk::BatchReversed);
        if reversed {
            messages.reverse();
        }
        let mut positions: Vec<(u32, u64)> = messages
            .into_iter()
            .map(|m| {
                let partition = topic.route(m.key.as_deref());
                let offset = topic.partitions[partition as usize].append(Message {
                    key: m.key,
                    payload: m.payload,
                    headers: m.headers,
                    publish_ms,
                });
                (partition, offset)
            })
            .collect();
        if reversed {
            positions.reverse();
        }
        Ok(positions)
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
