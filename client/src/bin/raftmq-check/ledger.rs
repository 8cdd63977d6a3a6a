//! The checker's bookkeeping: what was confirmed, what came back, and
//! whether it came back whole and in order. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One key's history. Sequence numbers start at 1 and are given out in
/// order by the publisher, so per-key order means: the first delivery of
/// each sequence number comes after the first deliveries of all smaller
/// ones that were ever delivered.
#[derive(Debug, Default)]
struct KeyHistory {
    confirmed: BTreeSet<u64>,
    delivered: BTreeSet<u64>,
    /// Highest sequence number delivered so far (0: none).
    delivered_max: u64,
}

/// What one delivery turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First delivery of this message, in order.
    New,
    /// Delivered before: a redelivery or a second stored copy.
    Duplicate,
    /// First delivery, but a later message of the same key came first.
    OutOfOrder,
}

/// The figures the checker reports; `lost` and `order_violations` must be 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Totals {
    pub sent: u64,
    pub confirmed: u64,
    /// Sends whose outcome is unknown or negative (never confirmed).
    pub unconfirmed: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Confirmed messages never delivered.
    pub lost: u64,
    /// Deliveries of a message already delivered.
    pub duplicates: u64,
    pub order_violations: u64,
    /// Delivered but never confirmed: stored although the answer was lost.
    pub delivered_unconfirmed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    keys: BTreeMap<String, KeyHistory>,
    sent: u64,
    unconfirmed: u64,
    duplicates: u64,
    order_violations: u64,
    /// Confirmed and not delivered yet, kept as a count because the drain
    /// asks after every delivery.
    missing: u64,
}

impl Ledger {
    pub(crate) fn sent(&mut self) {
        self.sent += 1;
    }

    pub(crate) fn confirmed(&mut self, key: &str, sequence: u64) {
        let history = self.keys.entry(key.to_string()).or_default();
        if history.confirmed.insert(sequence) && !history.delivered.contains(&sequence) {
            self.missing += 1;
        }
    }

    pub(crate) fn unconfirmed(&mut self) {
        self.unconfirmed += 1;
    }

    pub(crate) fn delivered(&mut self, key: &str, sequence: u64) -> Seen {
        let history = self.keys.entry(key.to_string()).or_default();
        let first = history.delivered.insert(sequence);
        if first && history.confirmed.contains(&sequence) {
            self.missing -= 1;
        }
        let seen = if !first {
            Seen::Duplicate
        } else if sequence < history.delivered_max {
            Seen::OutOfOrder
        } else {
            history.delivered_max = sequence;
            Seen::New
        };
        match seen {
            Seen::Duplicate => self.duplicates += 1,
            Seen::OutOfOrder => self.order_violations += 1,
            Seen::New => {}
        }
        seen
    }

    /// Confirmed messages not delivered yet; 0 means the drain is complete.
    pub(crate) fn missing(&self) -> u64 {
        self.missing
    }

    pub(crate) fn totals(&self) -> Totals {
        let sum = |count: fn(&KeyHistory) -> u64| self.keys.values().map(count).sum::<u64>();
        Totals {
            sent: self.sent,
            confirmed: sum(|history| history.confirmed.len() as u64),
            unconfirmed: self.unconfirmed,
            delivered: sum(|history| history.delivered.len() as u64),
            lost: self.missing(),
            duplicates: self.duplicates,
            order_violations: self.order_violations,
            delivered_unconfirmed: sum(|history| {
                history.delivered.difference(&history.confirmed).count() as u64
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a script of events against a fresh ledger: `c k 3` confirms
    /// key k's message 3, `d k 3` delivers it (compared with the expected
    /// `Seen`), `u` is a send with no confirm.
    fn check(script: &[(&str, Option<Seen>)], expected: Totals) {
        let mut ledger = Ledger::default();
        for (step, seen) in script {
            let words: Vec<&str> = step.split(' ').collect();
            match words.as_slice() {
                ["c", key, sequence] => {
                    ledger.sent();
                    ledger.confirmed(key, sequence.parse().unwrap());
                }
                ["u"] => {
                    ledger.sent();
                    ledger.unconfirmed();
                }
                ["d", key, sequence] => {
                    let actual = ledger.delivered(key, sequence.parse().unwrap());
                    assert_eq!(Some(actual), *seen, "{step}");
                }
                _ => panic!("bad step {step}"),
            }
        }
        assert_eq!(ledger.totals(), expected);
    }

    #[test]
    fn everything_confirmed_comes_back_once_in_order() {
        check(
            &[
                ("c a 1", None),
                ("c a 2", None),
                ("c b 1", None),
                ("d b 1", Some(Seen::New)),
                ("d a 1", Some(Seen::New)),
                ("d a 2", Some(Seen::New)),
            ],
            Totals {
                sent: 3,
                confirmed: 3,
                delivered: 3,
                ..Totals::default()
            },
        );
    }

    /// A leader crash redelivers what was in flight, and a re-sent batch
    /// can be stored twice: both are duplicates, neither breaks the order.
    #[test]
    fn redeliveries_are_duplicates_not_violations() {
        check(
            &[
                ("c a 1", None),
                ("c a 2", None),
                ("d a 1", Some(Seen::New)),
                ("d a 2", Some(Seen::New)),
                ("d a 1", Some(Seen::Duplicate)),
                ("d a 2", Some(Seen::Duplicate)),
            ],
            Totals {
                sent: 2,
                confirmed: 2,
                delivered: 2,
                duplicates: 2,
                ..Totals::default()
            },
        );
    }

    #[test]
    fn a_late_first_delivery_is_an_order_violation() {
        check(
            &[
                ("c a 1", None),
                ("c a 2", None),
                ("d a 2", Some(Seen::New)),
                ("d a 1", Some(Seen::OutOfOrder)),
            ],
            Totals {
                sent: 2,
                confirmed: 2,
                delivered: 2,
                order_violations: 1,
                ..Totals::default()
            },
        );
    }

    /// An unconfirmed send may or may not be stored: a gap is fine, and so
    /// is its delivery.
    #[test]
    fn unknown_outcomes_are_neither_lost_nor_violations() {
        check(
            &[
                ("c a 1", None),
                ("u", None),
                ("c a 3", None),
                ("d a 1", Some(Seen::New)),
                ("d a 3", Some(Seen::New)),
                ("u", None),
                ("d a 4", Some(Seen::New)),
            ],
            Totals {
                sent: 4,
                confirmed: 2,
                unconfirmed: 2,
                delivered: 3,
                delivered_unconfirmed: 1,
                ..Totals::default()
            },
        );
    }

    #[test]
    fn a_confirmed_message_never_delivered_is_lost() {
        check(
            &[("c a 1", None), ("c a 2", None), ("d a 2", Some(Seen::New))],
            Totals {
                sent: 2,
                confirmed: 2,
                delivered: 1,
                lost: 1,
                ..Totals::default()
            },
        );
    }
}
