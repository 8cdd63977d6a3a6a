//! The identifiers the state machine knows things by.

/// Identifies a consumer: assigned in log order when it attaches.
pub type ConsumerId = u64;

/// A Raft node id.
pub type NodeId = u64;
