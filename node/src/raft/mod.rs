//! The Raft layer: openraft's type configuration, its log store and state
//! machine adapters over the `Disk` seam, and its network over gRPC.
//!
//! Only this layer names openraft types: the layers above see `RaftHandle`
//! and its plain views. It knows the state machine as an opaque
//! `machine::State` with an apply function, never topics.

// openraft's traits fix the error type (`StorageError`, ~224 bytes); boxing
// it in our helpers would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

mod address;
mod bodies;
mod codec;
mod elections;
mod format;
mod handle;
mod handoff;
mod log_store;
mod membership;
mod network;
mod runtime;
mod snapshots;
mod state_machine;
mod wire;

pub use address::Addresses;
pub use bodies::{Bodies, BodyError, BODY_CACHE_BYTES};
pub use codec::{
    decode, decode_compressed_from, encode, encode_compressed_into, encoded_size, CodecError,
};
use elections::break_election_ties;
pub use format::{check_format, FormatError, STORAGE_FORMAT};
pub use handle::{
    Member, RaftError, RaftHandle, RaftStatus, RaftWatch, Role, SnapshotError, WriteError,
};
pub use handoff::HandOffError;
pub use log_store::{LogStats, LogStore};
pub use membership::MembershipError;
pub use network::is_peer_failure_log;
use network::Network;
pub use network::{PeerError, PeerLink, Peers};
pub use runtime::{seed_thread_rng, SeededRuntime};
use snapshots::snapshot_when_due;
pub use state_machine::{EffectSink, SnapshotStats, StateMachineStore};
pub use wire::{RpcKind, WireError, RAFT_GROUP, RAFT_MESSAGE_BYTES_MAX};

use crate::machine::{Outcome, Request};

/// One log entry's outcomes, one per command, in order.
pub type Response = Vec<Outcome>;

openraft::declare_raft_types!(
    /// raftmq's openraft configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = Addresses,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::storage::SnapshotData,
        AsyncRuntime = SeededRuntime,
);

/// Short names for openraft's long generic types, so call sites stay
/// readable.
pub mod typ {
    use super::TypeConfig;

    pub type NodeId = u64;
    pub type Node = super::Addresses;
    pub type Raft = openraft::Raft<TypeConfig>;
    pub type Entry = openraft::Entry<TypeConfig>;
    pub type LogId = openraft::LogId<NodeId>;
    pub type Vote = openraft::Vote<NodeId>;
    pub type StorageError = openraft::StorageError<NodeId>;
    pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
    pub type Snapshot = openraft::Snapshot<TypeConfig>;
    pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
    pub type RpcError<E = openraft::error::Infallible> =
        openraft::error::RPCError<NodeId, Node, RaftError<E>>;
    pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
    pub type InstallSnapshotError = openraft::error::InstallSnapshotError;
    pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
    pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
    pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
    pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
}
