//! Node configuration: identity, peers and the limits checked at the edge.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::machine::NodeId;
use crate::raft::Addresses;
use crate::tls::Tls;

/// The cluster id of a node not given one (`--cluster-id`).
pub const CLUSTER_ID_DEFAULT: &str = "raftmq";

/// Limits the gRPC layer enforces before anything reaches the log.
#[derive(Clone, Debug)]
pub struct EdgeLimits {
    /// Largest message (payload + key + headers), in bytes.
    pub message_bytes_max: usize,
    /// Most messages in one publish request.
    pub messages_per_publish_max: usize,
    /// Largest gRPC request the node decodes, in bytes.
    pub request_bytes_max: usize,
    /// How long a write waits for its commit before answering UNAVAILABLE
    /// (outcome unknown).
    pub commit_timeout: Duration,
    /// What one connection may hold of the node at once.
    pub connection: Share,
    /// What one user may hold at once, over all its connections (with
    /// client authentication on).
    pub user: Share,
}

/// One client's share of the node (`grpc::Shares`): a client past it
/// waits for its own earlier work, or is refused a consumer, so one client
/// flooding the node cannot starve the others.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    /// Bytes of requests awaiting their commit.
    pub bytes_max: u32,
    /// Commands (requests) awaiting their commit.
    pub commands_max: u32,
    /// Consumers attached.
    pub consumers_max: u32,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            message_bytes_max: 1024 * 1024,
            messages_per_publish_max: 10_000,
            request_bytes_max: 8 * 1024 * 1024,
            commit_timeout: Duration::from_secs(10),
            // Above what one producer needs to keep the log busy, far
            // below the proposer's queue (16,384 commands).
            connection: Share {
                bytes_max: 16 * 1024 * 1024,
                commands_max: 4_096,
                consumers_max: 256,
            },
            user: Share {
                bytes_max: 128 * 1024 * 1024,
                commands_max: 8_192,
                consumers_max: 1_024,
            },
        }
    }
}

/// Raft timing. The keepalive timeout of peer channels stays below the
/// election timeout (STACK.md).
///
/// They bound failover: openraft's followers stand only after the leader's
/// lease (`election_max`) plus their own timeout (`election_min` to
/// `election_max`) without a heartbeat, so after a leader crash a new one
/// leads within 1.2 to 1.6 s, and clients (backing off at most 200 ms)
/// carry on within 2 s (`raftmq bench failover`). Lower, and a follower
/// whose log fsync stalls on a busy disk stands needlessly.
#[derive(Clone, Debug)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(400),
            election_max: Duration::from_millis(800),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Every voter of the initial cluster (this node included), by id: the
    /// address peers use to reach it.
    pub peers: BTreeMap<NodeId, String>,
    /// Where clients reach a node, where that differs from its peer
    /// address (`--advertise`). Recorded in the membership when the
    /// cluster is created or the node added, so every node redirects to it.
    pub advertise: BTreeMap<NodeId, String>,
    pub limits: EdgeLimits,
    pub raft: RaftTimings,
    /// Entries between snapshots at least (`raft::snapshot_when_due`); the
    /// log behind a snapshot is purged.
    pub snapshot_every: u64,
    /// Bytes of recently applied or read message bodies kept in memory
    /// (`raft::Bodies`); deliveries of anything older read the log.
    pub body_cache_bytes: usize,
    /// Log a relocation of old bodies must free (`broker::compact_when_due`).
    pub compact_frees_bytes: u64,
    /// Started to join a running cluster (`--join`): it never initializes
    /// a cluster of its own, and waits for a leader to add it.
    pub join: bool,
    /// Sent with every Raft RPC; RPCs naming another cluster are refused.
    pub cluster_id: String,
    /// TLS for the listener and for peer connections; `None` is plaintext.
    pub tls: Option<Tls>,
    /// The users file (`access`); `None` turns client authentication off.
    pub users: Option<PathBuf>,
}

impl NodeConfig {
    pub fn new(id: NodeId, peers: BTreeMap<NodeId, String>) -> Self {
        NodeConfig {
            id,
            peers,
            advertise: BTreeMap::new(),
            limits: EdgeLimits::default(),
            raft: RaftTimings::default(),
            snapshot_every: 20_000,
            body_cache_bytes: crate::raft::BODY_CACHE_BYTES,
            compact_frees_bytes: crate::broker::COMPACT_FREES_BYTES,
            join: false,
            cluster_id: CLUSTER_ID_DEFAULT.to_string(),
            tls: None,
            users: None,
        }
    }

    /// Node `id`'s addresses, if it is in the peer list.
    pub fn addresses(&self, id: NodeId) -> Option<Addresses> {
        let peer = self.peers.get(&id)?;
        Some(Addresses {
            peer: peer.clone(),
            client: self.advertise.get(&id).unwrap_or(peer).clone(),
        })
    }

    /// The initial voters with their addresses.
    pub fn members(&self) -> BTreeMap<NodeId, Addresses> {
        self.peers
            .keys()
            .filter_map(|id| Some((*id, self.addresses(*id)?)))
            .collect()
    }
}
