//! Detects deliveries lost in transit from gaps in their sequence numbers.

/// Counts missing sequence numbers of the current consumer id.
///
/// Sequences are dense per consumer id from 1. Only the latest id is
/// tracked: a re-subscribe gets a new id and the old stream is gone, so its
/// deliveries can no longer arrive. Duplicates and reordering are not gaps.
#[derive(Debug, Default)]
pub(crate) struct SequenceGaps {
    current: Option<(u64, u64)>,
    missing: u64,
}

impl SequenceGaps {
    pub(crate) fn observe(&mut self, consumer_id: u64, sequence: u64) {
        match self.current {
            Some((id, last)) if id == consumer_id => {
                if sequence > last {
                    self.missing += sequence - last - 1;
                    self.current = Some((id, sequence));
                }
            }
            _ => {
                self.missing += sequence.saturating_sub(1);
                self.current = Some((consumer_id, sequence));
            }
        }
    }

    /// Sequence numbers skipped so far, over every consumer id seen.
    pub(crate) fn missing(&self) -> u64 {
        self.missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observes `(consumer_id, sequence)` pairs and compares the gap count.
    fn check(deliveries: &[(u64, u64)], expected: u64) {
        let mut gaps = SequenceGaps::default();
        for &(consumer_id, sequence) in deliveries {
            gaps.observe(consumer_id, sequence);
        }
        assert_eq!(gaps.missing(), expected, "{deliveries:?}");
    }

    #[test]
    fn gaps_are_counted_per_consumer_id() {
        check(&[], 0);
        check(&[(7, 1), (7, 2), (7, 3)], 0);
        check(&[(7, 1), (7, 4)], 2);
        // The first delivery of an id should be 1: anything later is a gap.
        check(&[(7, 3)], 2);
        // A re-subscribe restarts the count at 1 under a new id.
        check(&[(7, 1), (7, 2), (9, 1), (9, 2)], 0);
        check(&[(7, 1), (7, 2), (9, 2)], 1);
        // Duplicates and stragglers are not gaps.
        check(&[(7, 1), (7, 2), (7, 2), (7, 1), (7, 3)], 0);
    }
}
