//! The state's deadlines in time order: every ack timeout and every delayed
//! redelivery not yet due, so that the next deadline is the first entry and
//! a tick visits only what is due, however many subscriptions and messages
//! in flight there are (DESIGN.md, "Time").
//!
//! Derived data: the cursors say what falls due when (`Cursor::deadlines`).
//! The cursor's own moves keep this index in step (they cannot change a
//! deadline without it), decoding a snapshot rebuilds it, and
//! `State::check_invariants` compares the two.

use std::collections::BTreeSet;

/// What falls due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// A message in flight returns, counting a failure.
    AckTimeout,
    /// A returned message's delay (a delayed nack) is over.
    Redelivery,
}

/// The message a deadline belongs to. Ordered as a walk over the topics
/// meets them (topic, subscription, partition, offset), so that a tick
/// settles what is due in that order whatever the deadlines' order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadlineKey {
    pub topic: String,
    pub subscription: String,
    pub partition: u32,
    pub offset: u64,
    pub due: Due,
}

/// Every deadline, by (time, what). Each message has at most one: it is
/// either in flight or returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    by_time: BTreeSet<(u64, DeadlineKey)>,
}

impl Deadlines {
    /// The earliest deadline, due or not.
    pub fn next(&self) -> Option<u64> {
        self.by_time.first().map(|(at_ms, _)| *at_ms)
    }

    /// Takes out every deadline at or before `now_ms`: what a tick settles,
    /// in key order.
    pub fn pop_due(&mut self, now_ms: u64) -> BTreeSet<DeadlineKey> {
        let mut due = BTreeSet::new();
        while self
            .by_time
            .first()
            .is_some_and(|(at_ms, _)| *at_ms <= now_ms)
        {
            due.extend(self.by_time.pop_first().map(|(_, key)| key));
        }
        due
    }

    /// The deadlines of one subscription's partition, for its cursor's moves.
    pub fn of<'a>(
        &'a mut self,
        topic: &'a str,
        subscription: &'a str,
        partition: u32,
    ) -> CursorDeadlines<'a> {
        CursorDeadlines {
            index: self,
            topic,
            subscription,
            partition,
        }
    }

    /// The first entry here that `other` lacks.
    pub fn first_not_in<'a>(&'a self, other: &'a Deadlines) -> Option<&'a (u64, DeadlineKey)> {
        self.by_time.difference(&other.by_time).next()
    }
}

/// One cursor's share of the index: a subscription's partition.
pub struct CursorDeadlines<'a> {
    index: &'a mut Deadlines,
    topic: &'a str,
    subscription: &'a str,
    partition: u32,
}

impl CursorDeadlines<'_> {
    pub fn set(&mut self, at_ms: u64, due: Due, offset: u64) {
        let key = self.key(due, offset);
        self.index.by_time.insert((at_ms, key));
    }

    /// Removes a deadline; one already taken out (by a tick) is no error.
    pub fn clear(&mut self, at_ms: u64, due: Due, offset: u64) {
        let key = self.key(due, offset);
        self.index.by_time.remove(&(at_ms, key));
    }

    fn key(&self, due: Due, offset: u64) -> DeadlineKey {
        DeadlineKey {
            topic: self.topic.to_string(),
            subscription: self.subscription.to_string(),
            partition: self.partition,
            offset,
            due,
        }
    }
}
