//! Temporary topics: how long a topic lives once nobody consumes it
//! (RabbitMQ's `x-expires`), and who may consume an exclusive one. The
//! clock is the state machine's, so every replica deletes the same topic
//! at the same entry, through the log (`Command::Tick`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A topic declared without a name is called this followed by a number.
pub const SERVER_NAMED_PREFIX: &str = "tmp.";

/// A topic's lifetime settings and where it stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// The client whose consumers alone may attach (an exclusive topic),
    /// by the id its requests carry.
    pub owner: Option<u64>,
    /// Deleted once it has had no consumer for this long; 0: never.
    pub expires_ms: u32,
    /// Since when it has had no consumer, while it has none and expires.
    pub unused_since_ms: Option<u64>,
}

impl Lifetime {
    /// When it is deleted, if nothing attaches first.
    pub fn expires_at(&self) -> Option<u64> {
        let since = self.unused_since_ms?;
        (self.expires_ms > 0).then(|| since.saturating_add(u64::from(self.expires_ms)))
    }

    /// Whether a consumer of `client` may attach.
    pub fn admits(&self, client: u64) -> bool {
        self.owner.is_none_or(|owner| owner == client)
    }
}

/// Every topic that will expire, by time: derived from the topics'
/// lifetimes, so rebuilt when a snapshot is decoded, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expiries(BTreeSet<(u64, String)>);

impl Expiries {
    /// Brings `topic`'s lifetime and its entry here in step with whether
    /// it has consumers, at `now_ms`: the clock starts when the last one
    /// goes (or the topic is declared without one), and stops when one
    /// attaches.
    pub fn update(&mut self, topic: &str, lifetime: &mut Lifetime, consumers: usize, now_ms: u64) {
        if lifetime.expires_ms == 0 {
            return;
        }
        let unused = consumers == 0;
        if unused == lifetime.unused_since_ms.is_some() {
            return;
        }
        if let Some(at) = lifetime.expires_at() {
            self.0.remove(&(at, topic.to_string()));
        }
        lifetime.unused_since_ms = unused.then_some(now_ms);
        self.insert(topic, lifetime);
    }

    /// Restarts the clock of an unused topic (declaring it again is a
    /// use, as in RabbitMQ).
    pub fn restart(&mut self, topic: &str, lifetime: &mut Lifetime, now_ms: u64) {
        self.forget(topic, lifetime);
        if lifetime.unused_since_ms.is_some() {
            lifetime.unused_since_ms = Some(now_ms);
        }
        self.insert(topic, lifetime);
    }

    pub fn insert(&mut self, topic: &str, lifetime: &Lifetime) {
        if let Some(at) = lifetime.expires_at() {
            self.0.insert((at, topic.to_string()));
        }
    }

    /// A topic that is being deleted.
    pub fn forget(&mut self, topic: &str, lifetime: &Lifetime) {
        if let Some(at) = lifetime.expires_at() {
            self.0.remove(&(at, topic.to_string()));
        }
    }

    pub fn next(&self) -> Option<u64> {
        self.0.first().map(|(at, _)| *at)
    }

    /// The topics whose time came by `now_ms`, in time then name order.
    pub fn due(&self, now_ms: u64) -> Vec<String> {
        self.0
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, topic)| topic.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_only_while_a_topic_has_no_consumer() {
        let mut expiries = Expiries::default();
        let mut lifetime = Lifetime {
            owner: Some(7),
            expires_ms: 1_000,
            unused_since_ms: None,
        };
        expiries.update("t", &mut lifetime, 0, 100);
        assert_eq!(expiries.next(), Some(1_100));
        assert!(expiries.due(1_099).is_empty());
        assert_eq!(expiries.due(1_100), vec!["t".to_string()]);

        expiries.update("t", &mut lifetime, 1, 500);
        assert_eq!((expiries.next(), lifetime.unused_since_ms), (None, None));
        expiries.update("t", &mut lifetime, 0, 2_000);
        assert_eq!(expiries.next(), Some(3_000));
        expiries.restart("t", &mut lifetime, 2_500);
        assert_eq!(expiries.next(), Some(3_500));
        expiries.forget("t", &lifetime);
        assert_eq!(expiries.next(), None);

        assert!(lifetime.admits(7));
        assert!(!lifetime.admits(8));
        let mut forever = Lifetime::default();
        expiries.update("u", &mut forever, 0, 100);
        assert_eq!(expiries.next(), None, "expires_ms 0: never");
        assert!(forever.admits(8));
    }
}
