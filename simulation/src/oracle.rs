//! What the workload saw, and the invariants it can judge from there:
//! no lost confirmed message, no phantom, per-key order (stored in the
//! order sent, delivered in the order stored; within a priority, as each
//! is a lane of partitions), acked messages never redelivered, credit
//! (DESIGN.md invariants 1, 2, 4, 5, 8), and no delayed message handed
//! out before its time by the state machine's clock.
//!
//! A write whose answer never came is *unknown*, never absent: it may be
//! stored, so it is neither required nor forbidden.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

pub type Position = (u32, u64);

#[derive(Clone, Default)]
pub struct Oracle {
    inner: Arc<Mutex<Observations>>,
}

#[derive(Default)]
struct Observations {
    /// Every payload ever sent, with its place in the order of sends.
    sent: BTreeMap<Bytes, u64>,
    /// The delay each delayed payload was sent with, in ms.
    delays: BTreeMap<Bytes, u32>,
    /// Confirmed places by key and partition (a priority's lane), in the
    /// order their messages were sent.
    confirmed_by_send: BTreeMap<(String, u32), BTreeMap<u64, Position>>,
    /// Payloads whose publish was confirmed, at their first confirmed place.
    confirmed: BTreeMap<Bytes, Position>,
    /// Confirmed places by key, for the order check.
    confirmed_by_key: BTreeMap<String, BTreeSet<Position>>,
    /// What a confirm said is stored at each place.
    stored_at: BTreeMap<Position, Bytes>,
    /// Where each delivered payload was first seen.
    delivered: BTreeMap<Bytes, Position>,
    /// Acks the broker answered OK, with the log index they applied at.
    acked: BTreeMap<Position, u64>,
    /// Acks sent, answered or not: any of them may have taken effect.
    ack_sent: BTreeSet<Position>,
    sessions: BTreeMap<u64, Session>,
    violations: Vec<String>,
}

impl Observations {
    fn settle_sent(&mut self, consumer: u64, positions: &[Position]) {
        let session = self.sessions.entry(consumer).or_default();
        session.settles_sent.extend(positions.iter().copied());
    }

    /// A producer's messages of one key are stored in the order it sent
    /// them (each key belongs to one producer): the confirmed message sent
    /// just before this one sits at a lower place, the one sent just after
    /// at a higher one.
    fn stored_in_send_order(&mut self, key: &str, payload: &Bytes, position: Position) {
        let Some(&order) = self.sent.get(payload) else {
            return;
        };
        let lane = (key.to_string(), position.0);
        let places = self.confirmed_by_send.entry(lane).or_default();
        places.insert(order, position);
        let before = places
            .range(..order)
            .next_back()
            .filter(|(_, p)| **p > position);
        let after = places
            .range(order + 1..)
            .next()
            .filter(|(_, p)| **p < position);
        if let Some((_, other)) = before.or(after) {
            let v = format!(
                "key {key}: {payload:?} at {position:?} stored out of send order with {other:?}"
            );
            self.violations.push(v);
        }
    }
}

/// One consumer stream as the client saw it.
#[derive(Default)]
struct Session {
    prefetch: u32,
    seen: BTreeSet<Position>,
    /// Positions of this stream an ack or a nack was sent for: either may
    /// have given the credit back.
    settles_sent: BTreeSet<Position>,
}

/// A delivery as the oracle needs it.
pub struct Seen<'a> {
    pub consumer: u64,
    pub prefetch: u32,
    /// Whether the subscription's mode promises order per key (all but
    /// shared).
    pub ordered: bool,
    pub position: Position,
    /// The log index whose apply handed it out.
    pub decided_at: u64,
    /// The state machine's time when it was published, and when handed out.
    pub publish_ms: u64,
    pub decided_ms: u64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a Bytes,
}

impl Oracle {
    fn lock(&self) -> MutexGuard<'_, Observations> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A payload sent, delayed by `delay_ms` (0: not delayed).
    pub fn sent(&self, payload: &Bytes, delay_ms: u32) {
        let mut o = self.lock();
        let order = o.sent.len() as u64;
        o.sent.entry(payload.clone()).or_insert(order);
        if delay_ms > 0 {
            o.delays.insert(payload.clone(), delay_ms);
        }
    }

    pub fn confirmed(&self, payload: &Bytes, key: Option<&str>, position: Position) {
        let mut o = self.lock();
        if let Some(earlier) = o.stored_at.get(&position) {
            if earlier != payload {
                let v = format!("two confirms for {position:?}: {earlier:?} and {payload:?}");
                o.violations.push(v);
            }
        }
        // Every producer is idempotent: a payload confirmed at two places
        // was stored twice (DESIGN.md invariant 7).
        if let Some(first) = o.confirmed.get(payload).filter(|first| **first != position) {
            let v = format!("{payload:?} stored twice: at {first:?} and {position:?}");
            o.violations.push(v);
        }
        o.stored_at.insert(position, payload.clone());
        if let Some(key) = key {
            o.confirmed_by_key
                .entry(key.to_string())
                .or_default()
                .insert(position);
            o.stored_in_send_order(key, payload, position);
        }
        o.confirmed.entry(payload.clone()).or_insert(position);
    }

    /// Judges one delivery against everything seen before it.
    pub fn delivered(&self, seen: Seen<'_>) {
        let mut o = self.lock();
        let Seen {
            consumer,
            prefetch,
            ordered,
            position,
            decided_at,
            publish_ms,
            decided_ms,
            key,
            payload,
        } = seen;
        // A delayed message waits for its time, by the state machine's
        // clock: the one that stamped its publish.
        if let Some(delay) = o.delays.get(payload) {
            let due = publish_ms + u64::from(*delay);
            if decided_ms < due {
                let early = due - decided_ms;
                let v = format!(
                    "{payload:?} at {position:?} handed out {early} ms before its delay ended"
                );
                o.violations.push(v);
            }
        }
        // No phantom: it was sent, and it is what the confirm said is there.
        if !o.sent.contains_key(payload) {
            let v = format!("phantom delivery {payload:?} at {position:?}");
            o.violations.push(v);
        }
        if let Some(stored) = o.stored_at.get(&position) {
            if stored != payload {
                let v = format!("{position:?} delivered {payload:?}, confirmed as {stored:?}");
                o.violations.push(v);
            }
        }
        // An acknowledged message is never handed out again: no delivery
        // decided after the ack applied. (One decided before it may still
        // arrive after the ack's answer; that is no redelivery.)
        if o.acked
            .get(&position)
            .is_some_and(|applied_at| decided_at > *applied_at)
        {
            let v = format!("{position:?} delivered again after its ack was confirmed");
            o.violations.push(v);
        }
        // Order per key: every earlier confirmed message of the key is acked
        // (or may be) or was handed to this same stream before.
        if let Some(key) = key
            .filter(|_| ordered)
            .map(|k| String::from_utf8_lossy(k).into_owned())
        {
            let earlier: Vec<Position> = o
                .confirmed_by_key
                .get(&key)
                .map(|places| places.range((position.0, 0)..position).copied().collect())
                .unwrap_or_default();
            let session = o.sessions.get(&consumer);
            let skipped = earlier
                .into_iter()
                .find(|p| !o.ack_sent.contains(p) && !session.is_some_and(|s| s.seen.contains(p)));
            if let Some(skipped) = skipped {
                let v = format!("key {key}: {position:?} delivered to consumer {consumer} before unacked {skipped:?}");
                o.violations.push(v);
            }
        }
        // Every producer is idempotent: one payload at two places was
        // stored twice, even if its first confirm was lost.
        let first = *o.delivered.entry(payload.clone()).or_insert(position);
        if first != position {
            let v = format!("{payload:?} stored twice: delivered from {first:?} and {position:?}");
            o.violations.push(v);
        }
        let session = o.sessions.entry(consumer).or_default();
        session.prefetch = prefetch;
        session.seen.insert(position);

        // Credit: what this stream got minus what it acked stays within its
        // prefetch (acks in flight may already have refilled it).
        let holding = (session.seen.len() - session.settles_sent.len()) as u64;
        if holding > u64::from(session.prefetch) {
            let v = format!("consumer {consumer} holds {holding} unacked, prefetch {prefetch}");
            o.violations.push(v);
        }
    }

    pub fn ack_sent(&self, consumer: u64, positions: &[Position]) {
        let mut o = self.lock();
        o.ack_sent.extend(positions.iter().copied());
        o.settle_sent(consumer, positions);
    }

    /// A nack hands the messages back: it frees credit, and acks nothing.
    pub fn nack_sent(&self, consumer: u64, positions: &[Position]) {
        self.lock().settle_sent(consumer, positions);
    }

    pub fn acked(&self, positions: &[Position], applied_at: u64) {
        self.lock()
            .acked
            .extend(positions.iter().map(|p| (*p, applied_at)));
    }

    pub fn confirmed_count(&self) -> usize {
        self.lock().confirmed.len()
    }

    pub fn delivered_count(&self) -> usize {
        self.lock().delivered.len()
    }

    /// Confirmed payloads not delivered yet.
    pub fn undelivered(&self) -> Vec<Bytes> {
        let o = self.lock();
        o.confirmed
            .keys()
            .filter(|p| !o.delivered.contains_key(*p))
            .cloned()
            .collect()
    }

    /// A violation found outside the judged topic.
    pub fn violation(&self, what: String) {
        self.lock().violations.push(what);
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }
}
