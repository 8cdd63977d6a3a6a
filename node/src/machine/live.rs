//! Which log entries still hold bodies of retained messages. The log is the
//! body store, so it must keep every entry from the oldest one counted
//! here; everything before it may go once a snapshot covers it
//! (ARCHITECTURE.md, "Bodies").

use std::collections::BTreeMap;

/// Retained messages per log entry, by the entry's index. Derived from the
/// partitions: rebuilt when a snapshot is decoded, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveBodies {
    counts: BTreeMap<u64, u32>,
}

impl LiveBodies {
    /// A message whose body is in entry `index` is retained.
    pub fn hold(&mut self, index: u64) {
        *self.counts.entry(index).or_insert(0) += 1;
    }

    /// A message whose body is in entry `index` is no longer retained.
    pub fn release(&mut self, index: u64) {
        if let Some(count) = self.counts.get_mut(&index) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&index);
            }
        }
    }

    /// The oldest log entry holding a retained message's body.
    pub fn oldest(&self) -> Option<u64> {
        self.counts.keys().next().copied()
    }
}
