//! The identifiers the state machine knows things by.

/// Identifies a consumer: assigned in log order when it attaches.
pub type ConsumerId = u64;

/// A Raft node id.
pub type NodeId = u64;

/// A message key's hash (`raftmq_rules::key_hash`): all dispatch needs of
/// a key, and 8 bytes whatever the key's length.
pub type KeyHash = u64;

/// A log entry, by its index and the term of the leader that made it: the
/// entry being applied, and where the bodies it publishes stay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryId {
    pub index: u64,
    pub term: u64,
}
