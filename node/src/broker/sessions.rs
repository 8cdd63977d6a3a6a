//! Local consumer sessions: where this node's consumer streams receive the
//! effects the state machine addresses to them.
//!
//! Every replica computes every delivery; a node keeps only those addressed
//! to its own node id and boot id, and drops the rest. A replayed log after
//! a restart addresses the old boot id, so it reaches nobody.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::machine::{Delivery, Effect, NodeId, SessionAddr};
use crate::raft::EffectSink;

/// Room a session's channel keeps beyond its prefetch. Deliveries in the
/// channel are in flight, so prefetch already bounds them; the slack only
/// covers the close event.
const SESSION_SLACK: usize = 16;

#[derive(Debug)]
pub enum SessionEvent {
    Deliver(Delivery),
    /// The state machine detached the consumer.
    Closed,
}

pub struct Sessions {
    node: NodeId,
    boot: u64,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, mpsc::Sender<SessionEvent>>>,
}

impl Sessions {
    pub fn new(node: NodeId, boot: u64) -> Self {
        Sessions {
            node,
            boot,
            next: AtomicU64::new(1),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// Opens a session able to hold `prefetch` deliveries.
    pub fn open(&self, prefetch: u32) -> (SessionAddr, mpsc::Receiver<SessionEvent>) {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(prefetch as usize + SESSION_SLACK);
        self.lock().insert(session, tx);
        let addr = SessionAddr {
            node: self.node,
            boot: self.boot,
            session,
        };
        (addr, rx)
    }

    pub fn close(&self, addr: SessionAddr) {
        self.lock().remove(&addr.session);
    }

    /// Whether `addr` is a session of this node's current boot that is
    /// still open.
    pub fn is_open(&self, addr: SessionAddr) -> bool {
        self.is_mine(addr) && self.lock().contains_key(&addr.session)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, mpsc::Sender<SessionEvent>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_mine(&self, addr: SessionAddr) -> bool {
        addr.node == self.node && addr.boot == self.boot
    }
}

impl EffectSink for Sessions {
    fn effects(&self, effects: Vec<Effect>) {
        let mut open = self.lock();
        for effect in effects {
            let addr = effect.session();
            if !self.is_mine(addr) {
                continue;
            }
            let event = match effect {
                Effect::Deliver { delivery, .. } => SessionEvent::Deliver(delivery),
                Effect::Closed { .. } => SessionEvent::Closed,
            };
            let Some(tx) = open.get(&addr.session) else {
                continue;
            };
            // A full or closed channel means the stream is broken: dropping
            // the sender ends it, and its end detaches the consumer, which
            // returns its messages. Nothing is lost: they stay in flight in
            // the state until then.
            let closing = matches!(event, SessionEvent::Closed);
            if tx.try_send(event).is_err() || closing {
                open.remove(&addr.session);
            }
        }
    }

    /// Closes every local session. Only a follower installs a snapshot,
    /// and a follower's sessions date from when it led: the leader since
    /// then detached their consumers (`LeaderStarted`), in entries the
    /// snapshot covers. Left open, such a stream stayed silent for good and
    /// its client never re-subscribed (found by the simulation).
    fn snapshot_installed(&self) {
        for (_, tx) in std::mem::take(&mut *self.lock()) {
            let _ = tx.try_send(SessionEvent::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_install_closes_every_local_session() {
        let sessions = Sessions::new(1, 7);
        let (a, mut a_events) = sessions.open(4);
        let (b, mut b_events) = sessions.open(4);
        assert!(sessions.is_open(a) && sessions.is_open(b));
        sessions.snapshot_installed();
        assert!(!sessions.is_open(a) && !sessions.is_open(b));
        assert!(sessions.is_empty());
        for events in [&mut a_events, &mut b_events] {
            assert!(matches!(events.try_recv(), Ok(SessionEvent::Closed)));
            // The sender is gone too: the stream ends after the close.
            assert!(events.try_recv().is_err());
        }
    }
}
