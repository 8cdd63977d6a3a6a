//! Which consumer gets which message: applied on every replica, so every
//! replica knows what is in flight, to whom (DESIGN.md, "What goes through
//! the log").
//!
//! Per partition, candidates come in order: returned messages (lowest offset
//! first, once their delay passed), then offsets never handed out. The
//! subscription's mode picks the consumer for each candidate; a candidate no
//! consumer may take now is passed over, within a bounded look-ahead. An
//! expired candidate is never handed out: it is passed over and answered,
//! to be dead-lettered (`Ledger::dispatch`). A message published delayed
//! and not due yet is deferred: it waits among the returned messages until
//! its time (`Cursor::defer`), holding back its key's later messages as a
//! delayed redelivery does.

use std::collections::{BTreeMap, BTreeSet};

use super::consumer::Consumer;
use super::deadlines::{CursorDeadlines, Deadlines};
use super::effect::{Delivery, Effect};
use super::ids::{ConsumerId, KeyHash};
use super::limits::{DISPATCH_LOOKAHEAD_MAX, DISPATCH_WINDOW_MAX};
use super::quirks::{self, Quirk};
use super::subscription::{Counts, Cursor, InFlight, Mode, Returned, Standing, Subscription};
use super::topic::{Partition, Stored, Topic};

/// When a dispatch happens: the state machine's time and the log entry
/// being applied (by index and term).
#[derive(Clone, Copy, Debug)]
pub(super) struct Moment {
    pub now_ms: u64,
    pub index: u64,
    pub term: u64,
}

/// Hands out messages of `subscription_name` while its consumers have
/// credit, setting their ack deadlines in `deadlines`. Answers the
/// (partition, offset) of each expired message it passed over: never
/// delivered, for the caller to dead-letter.
pub(super) fn dispatch(
    topic_name: &str,
    topic: &mut Topic,
    subscription_name: &str,
    consumers: &mut BTreeMap<ConsumerId, Consumer>,
    deadlines: &mut Deadlines,
    moment: Moment,
    effects: &mut Vec<Effect>,
) -> BTreeSet<(u32, u64)> {
    let now_ms = moment.now_ms;
    let mut expired = BTreeSet::new();
    let Topic {
        partitions,
        subscriptions,
        max_priority,
        ..
    } = topic;
    let Some(subscription) = subscriptions.get_mut(subscription_name) else {
        return expired;
    };
    let members: Vec<ConsumerId> = match subscription.config.mode {
        Mode::Exclusive | Mode::Failover => subscription
            .consumers
            .first()
            .copied()
            .into_iter()
            .collect(),
        Mode::Shared | Mode::KeyShared => subscription.consumers.iter().copied().collect(),
    };
    if members.is_empty() {
        return expired;
    }
    let levels = u32::from(*max_priority) + 1;
    let width = partitions.len() as u32 / levels;
    // Each round hands out at most one message per partition, from the
    // highest priority lane that has one to give (a lower lane gets the
    // round only when every higher one gave nothing), and the rounds stop
    // when one hands out none: bounded by the consumers' total credit.
    loop {
        let mut handed = false;
        for (level, step) in (0..levels)
            .rev()
            .flat_map(|l| (0..width).map(move |s| (l, s)))
        {
            if handed && step == 0 {
                break; // a higher lane gave this round
            }
            let index = (level * width + (subscription.next_partition + step) % width) as usize;
            let mut deferred = Vec::new();
            let picked = pick(
                &partitions[index],
                subscription,
                index,
                &members,
                consumers,
                now_ms,
                &mut expired,
                &mut deferred,
            );
            let mut cursor_deadlines = deadlines.of(topic_name, subscription_name, index as u32);
            for (offset, due_ms) in deferred {
                subscription.cursors[index].defer(offset, due_ms, &mut cursor_deadlines);
            }
            if let Some((offset, consumer, counts)) = picked {
                hand_out(
                    &partitions[index],
                    subscription,
                    index,
                    offset,
                    consumer,
                    counts,
                    consumers,
                    &mut deadlines.of(topic_name, subscription_name, index as u32),
                    moment,
                    effects,
                );
                subscription.next_partition = (index as u32 % width + 1) % width;
                handed = true;
            }
        }
        if !handed {
            return expired;
        }
    }
}

/// The next message of one partition some consumer may take, and who.
/// Expired candidates are passed over and added to `expired`; fresh ones
/// not due yet are passed over and added to `deferred`, with their time.
#[allow(clippy::too_many_arguments)]
fn pick(
    partition: &Partition,
    subscription: &mut Subscription,
    index: usize,
    members: &[ConsumerId],
    consumers: &BTreeMap<ConsumerId, Consumer>,
    now_ms: u64,
    expired: &mut BTreeSet<(u32, u64)>,
    deferred: &mut Vec<(u64, u64)>,
) -> Option<(u64, ConsumerId, Counts)> {
    let Subscription {
        config,
        cursors,
        next_consumer,
        ..
    } = subscription;
    let cursor = &cursors[index];
    // A returned message as dispatch looks at it: once its delay passed a
    // candidate, before that it only waits.
    let look = |(offset, r): (&u64, &Returned)| {
        if r.not_before_ms <= now_ms {
            Look::Candidate(*offset, r.counts)
        } else {
            Look::Waiting(*offset)
        }
    };
    // Redeliveries in offset order, before anything new: each was handed
    // out before every later message of its key.
    let returned = || {
        cursor
            .returned
            .iter()
            .filter(|(_, r)| r.counts.attempts > 0)
            .map(look)
    };
    let horizon = partition
        .end()
        .min(cursor.floor.saturating_add(DISPATCH_WINDOW_MAX))
        .min(cursor.next.saturating_add(DISPATCH_LOOKAHEAD_MAX));
    // The `DelayEndsEarly` quirk lets a delay end up to 300 ms early.
    let early = if quirks::on(Quirk::DelayEndsEarly) {
        300
    } else {
        0
    };
    let never_handed_out = (cursor.next..horizon)
        .filter(|offset| cursor.standing(*offset) == Standing::NeverDelivered)
        .map(|offset| match partition.due_ms(offset) {
            Some(due_ms) if due_ms > now_ms + early => Look::NotDue(offset, due_ms),
            _ => Look::Candidate(offset, Counts::default()),
        });
    // Messages deferred for their delay were never handed out either: they
    // take their place among the new ones by offset, not before them, so
    // that a key's earlier messages still go first.
    let deferred_before = cursor
        .returned
        .iter()
        .filter(|(offset, r)| r.counts.attempts == 0 && **offset < horizon)
        .map(look);
    let fresh = merge_by_offset(deferred_before, never_handed_out);
    // Redeliveries first; the `ReturnedLast` quirk puts them last.
    let late = quirks::on(Quirk::ReturnedLast);
    let looks = returned()
        .filter(move |_| !late)
        .chain(fresh)
        .chain(returned().filter(move |_| late));
    // Keys that must wait, from the offset of their earliest message still
    // to go. In the modes that keep order per key, a returned message
    // waiting out its delay holds back every later message of its key
    // (DESIGN.md, order per key).
    let ordered = config.mode != Mode::Shared;
    let mut blocked: BTreeMap<KeyHash, u64> = BTreeMap::new();
    let mut candidates = 0;
    for look in looks {
        let (offset, counts) = match look {
            Look::Candidate(offset, counts) => (offset, counts),
            Look::NotDue(offset, due_ms) => {
                deferred.push((offset, due_ms));
                hold_back(&mut blocked, partition, offset, ordered);
                continue;
            }
            Look::Waiting(offset) => {
                hold_back(&mut blocked, partition, offset, ordered);
                continue;
            }
        };
        candidates += 1;
        if candidates > DISPATCH_LOOKAHEAD_MAX {
            break;
        }
        let message = partition.get(offset);
        if message.is_some_and(|m| m.expired(now_ms)) {
            expired.insert((index as u32, offset));
            continue;
        }
        let key = message.and_then(Stored::key);
        if key.is_some_and(|key| blocked.get(&key).is_some_and(|from| *from < offset)) {
            continue;
        }
        let picker = Picker {
            mode: config.mode,
            cursor,
            members,
            consumers,
        };
        match (picker.choose(key, next_consumer), key) {
            (Some(consumer), _) => return Some((offset, consumer, counts)),
            (None, Some(key)) if config.mode == Mode::KeyShared => {
                blocked.entry(key).or_insert(offset);
            }
            // In the other modes nobody can take this one, so nobody can
            // take any later one either.
            (None, _) => return None,
        }
    }
    None
}

/// A message waiting for its time holds back the later messages of its
/// key, in the modes that keep order per key.
fn hold_back(
    blocked: &mut BTreeMap<KeyHash, u64>,
    partition: &Partition,
    offset: u64,
    ordered: bool,
) {
    let key = partition.get(offset).and_then(Stored::key);
    if let Some(key) = key.filter(|_| ordered) {
        blocked.entry(key).or_insert(offset);
    }
}

/// Two sequences of looks, each in offset order, as one in offset order.
fn merge_by_offset(
    a: impl Iterator<Item = Look>,
    b: impl Iterator<Item = Look>,
) -> impl Iterator<Item = Look> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.offset() <= y.offset() => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// One message dispatch looks at: a candidate to hand out (with its
/// counts so far), a returned message still waiting out its delay, or a
/// fresh one published delayed, not due before the time it carries.
enum Look {
    Candidate(u64, Counts),
    Waiting(u64),
    NotDue(u64, u64),
}

impl Look {
    fn offset(&self) -> u64 {
        match self {
            Look::Candidate(offset, _) | Look::Waiting(offset) | Look::NotDue(offset, _) => *offset,
        }
    }
}

/// What choosing a consumer for one message looks at.
struct Picker<'a> {
    mode: Mode,
    cursor: &'a Cursor,
    members: &'a [ConsumerId],
    consumers: &'a BTreeMap<ConsumerId, Consumer>,
}

impl Picker<'_> {
    /// The consumer that may take a message with `key` now, by mode;
    /// `next_consumer` is the subscription's round-robin counter.
    fn choose(&self, key: Option<KeyHash>, next_consumer: &mut u64) -> Option<ConsumerId> {
        let has_credit = |id: &ConsumerId| self.consumers.get(id).is_some_and(Consumer::has_credit);
        match key.filter(|_| self.mode == Mode::KeyShared) {
            Some(key) => {
                // A key stays with the consumer holding its messages
                // (draining when consumers come and go), else goes to its
                // owner by hash.
                let target = match self.cursor.held_keys.get(&key) {
                    Some(holder) => holder.consumer,
                    None => {
                        let slots = self.members.len() as u32;
                        self.members[raftmq_rules::slot_for_hash(key, slots) as usize]
                    }
                };
                Some(target).filter(has_credit)
            }
            None => {
                // Round robin from where the last handout left off.
                let start = *next_consumer;
                let count = self.members.len() as u64;
                let found = (0..count)
                    .map(|step| self.members[((start + step) % count) as usize])
                    .find(has_credit)?;
                *next_consumer = start + 1;
                Some(found)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn hand_out(
    partition: &Partition,
    subscription: &mut Subscription,
    index: usize,
    offset: u64,
    id: ConsumerId,
    mut counts: Counts,
    consumers: &mut BTreeMap<ConsumerId, Consumer>,
    deadlines: &mut CursorDeadlines<'_>,
    moment: Moment,
    effects: &mut Vec<Effect>,
) {
    let message = partition
        .get(offset)
        .expect("offsets at or above the ack floor are retained")
        .clone();
    let mode = subscription.config.mode;
    let cursor = &mut subscription.cursors[index];
    if quirks::on(Quirk::SkipMessage) && message.key().is_none() && offset.is_multiple_of(8) {
        cursor.ack(offset, deadlines);
        return;
    }
    let Some(consumer) = consumers.get_mut(&id) else {
        return;
    };
    counts.attempts += 1;
    let timeout = subscription.config.ack_timeout_ms;
    cursor.hand_out(
        offset,
        InFlight {
            consumer: id,
            counts,
            // Only key-shared promises a key to one consumer at a time.
            key: message.key().filter(|_| mode == Mode::KeyShared),
            deadline_ms: (timeout > 0).then(|| moment.now_ms.saturating_add(timeout)),
        },
        deadlines,
    );
    consumer.in_flight += 1;
    consumer.sequence += 1;
    subscription.tally.delivered += 1;
    effects.push(Effect::Deliver {
        to: consumer.session,
        delivery: Delivery {
            consumer: id,
            sequence: consumer.sequence,
            partition: index as u32,
            offset,
            message,
            attempts: counts.attempts,
            decided_at: moment.index,
            decided_ms: moment.now_ms,
        },
    });
}
