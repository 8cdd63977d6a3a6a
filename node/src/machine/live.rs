//! Which log entries still hold bodies of retained messages, and how much.
//! The log is the body store, so it must keep every entry from the oldest
//! one counted here; everything before it may go once a snapshot covers it
//! (ARCHITECTURE.md, "Bodies"). The leader's compactor reads the bytes to
//! find old entries that keep little alive (`Command::Relocate`).

use std::collections::BTreeMap;

/// What one log entry holds of retained messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub messages: u32,
    /// Their counted bytes (`Stored::bytes`).
    pub bytes: u64,
}

/// Retained messages per log entry, by the entry's index. Derived from the
/// partitions: rebuilt when a snapshot is decoded, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveBodies {
    entries: BTreeMap<u64, Held>,
}

impl LiveBodies {
    /// A message of `bytes` whose body is in entry `index` is retained.
    pub fn hold(&mut self, index: u64, bytes: u32) {
        let held = self.entries.entry(index).or_default();
        held.messages += 1;
        held.bytes += u64::from(bytes);
    }

    /// A message of `bytes` whose body is in entry `index` is no longer
    /// retained.
    pub fn release(&mut self, index: u64, bytes: u32) {
        if let Some(held) = self.entries.get_mut(&index) {
            held.messages -= 1;
            held.bytes -= u64::from(bytes);
            if held.messages == 0 {
                self.entries.remove(&index);
            }
        }
    }

    /// The oldest log entry holding a retained message's body.
    pub fn oldest(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// The entries holding retained bodies, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (u64, Held)> + '_ {
        self.entries.iter().map(|(index, held)| (*index, *held))
    }
}
