//! openraft's network over the `Peers` seam: the bodies come from `wire`,
//! the gRPC layer carries them (`grpc::GrpcPeers`), and the simulation's
//! RPC faults act here.
//!
//! A snapshot goes with the log entries its messages' bodies are in: they
//! are sent first, a batch at a time, read from this node's disk (its kept
//! import, else its log), and the follower takes the snapshot's last chunk
//! only once it holds them all (`wire::serve`). While they go, the leader
//! sends the follower empty AppendEntries every heartbeat interval:
//! openraft's own heartbeats wait until the snapshot is sent, and a wiped
//! follower that heard nothing for an election timeout stood for election,
//! its higher term deposed the leader, and the next leader sent the bodies
//! from the start again (5,000,000 messages: 5 GB of bodies, never done).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use openraft::error::{
    Fatal, NetworkError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::SnapshotResponse;
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::runtime::run_blocking;
use super::state_machine::body_floor;
use super::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, Node, NodeId, RpcError, Snapshot, SnapshotMeta, Vote, VoteRequest,
    VoteResponse,
};
use super::wire::{decode_reply, encode_request, RpcKind, SnapshotBodies};
use super::TypeConfig;
use crate::planted::{self, Bug};
use crate::storage::{Disk, LogEntry};
use crate::transport::{RpcFate, RpcFaults};

/// Bytes of log entries in one `SnapshotBodies` batch at most: what each
/// side holds of them at a time.
const BODIES_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How long one batch may take, its fsync on the follower included.
const BODIES_BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failed send of bodies waits before it is reported.
const BODIES_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why a Raft RPC got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer cannot be reached (refused, no route, bad address): openraft
    /// backs off before trying it again.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer is there but did not answer in time, or the call failed in
    /// a way worth retrying at once. A peer past the deadline is slow, not
    /// gone: backing off from it (openraft's 500 ms with nothing
    /// replicated) turned a follower busy writing a snapshot into a commit
    /// stall.
    #[error("raft rpc failed: {0}")]
    Failed(String),
}

/// How the Raft layer reaches its peers; the gRPC layer implements it.
pub trait Peers: Send + Sync + 'static {
    type Link: PeerLink;
    /// A link to the peer at `addr` that connects on first use.
    fn link(&self, addr: &str) -> Result<Self::Link, PeerError>;
}

/// One peer: sends a request body of `kind`, answers the reply body.
pub trait PeerLink: Clone + Send + Sync + 'static {
    fn call(
        &self,
        kind: RpcKind,
        body: Vec<u8>,
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, PeerError>> + Send;
}

pub struct Network<P> {
    peers: Arc<P>,
    faults: Option<Arc<dyn RpcFaults>>,
    /// Where the bodies a snapshot is sent with are read.
    disk: Arc<dyn Disk>,
    /// Raft's heartbeat interval, kept while bodies are sent.
    heartbeat: Duration,
}

impl<P: Peers> Network<P> {
    pub fn new(
        peers: Arc<P>,
        faults: Option<Arc<dyn RpcFaults>>,
        disk: Arc<dyn Disk>,
        heartbeat: Duration,
    ) -> Self {
        Network {
            peers,
            faults,
            disk,
            heartbeat,
        }
    }
}

impl<P: Peers> RaftNetworkFactory<TypeConfig> for Network<P> {
    type Network = PeerClient<P::Link>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            target,
            link: self.peers.link(&node.peer).map_err(|e| e.to_string()),
            faults: self.faults.clone(),
            disk: self.disk.clone(),
            heartbeat: self.heartbeat,
            unreachable: false,
        }
    }
}

pub struct PeerClient<L> {
    target: NodeId,
    link: Result<L, String>,
    faults: Option<Arc<dyn RpcFaults>>,
    disk: Arc<dyn Disk>,
    heartbeat: Duration,
    /// Its last AppendEntries found it unreachable (logged once, see
    /// `note_reach`).
    unreachable: bool,
}

impl<L: PeerLink> PeerClient<L> {
    /// Logs when the peer becomes unreachable and when it answers again,
    /// once each: openraft's ERROR for every failed append is filtered
    /// (`is_peer_failure_log`), and a line per retry would fill the log of
    /// a cluster with a member down for an hour.
    fn note_reach<T, E>(&mut self, answer: &Result<T, RpcError<E>>)
    where
        E: std::error::Error,
    {
        match (answer, self.unreachable) {
            (Err(RpcError::Unreachable(e)), false) => {
                tracing::warn!(target_node = self.target, error = %e, "peer unreachable; replication to it backs off until it answers");
                self.unreachable = true;
            }
            (Ok(_), true) => {
                tracing::info!(target_node = self.target, "peer reachable again");
                self.unreachable = false;
            }
            _ => {}
        }
    }

    async fn call<Req, Resp, E>(
        &mut self,
        kind: RpcKind,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let link = self
            .link
            .as_ref()
            .map_err(|e| Unreachable::new(&PeerError::Unreachable(e.clone())))?
            .clone();
        let body = encode_request(request).map_err(|e| NetworkError::new(&e))?;
        let fate = self
            .faults
            .as_ref()
            .map_or(RpcFate::Send, |f| f.fate(self.target));
        match fate {
            RpcFate::Send => {}
            RpcFate::Delay(delay) => tokio::time::sleep(delay).await,
            RpcFate::Duplicate => {
                let _ = link.call(kind, body.clone(), ttl).await;
            }
            RpcFate::StaleCopy(delay) => {
                let (link, body) = (link.clone(), body.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = link.call(kind, body, ttl).await;
                });
            }
        }
        let reply = link.call(kind, body, ttl).await.map_err(|e| match e {
            PeerError::Unreachable(_) => RpcError::Unreachable(Unreachable::new(&e)),
            PeerError::Failed(_) => RpcError::Network(NetworkError::new(&e)),
        })?;
        let result = decode_reply::<Resp, E>(&reply).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RpcError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<L: PeerLink> PeerClient<L> {
    /// Sends the log entries from the snapshot's body floor to its last
    /// entry, a batch at a time, with a heartbeat of `vote`'s leader each
    /// heartbeat interval.
    async fn send_bodies(
        &mut self,
        vote: Vote,
        meta: &SnapshotMeta,
    ) -> Result<(), StreamingError<TypeConfig, Fatal<NodeId>>> {
        let (Some(floor), Some(last)) = (body_floor(&meta.snapshot_id), meta.last_log_id) else {
            return Ok(());
        };
        let mut next = floor;
        let mut beat_due = tokio::time::Instant::now();
        while next <= last.index {
            if tokio::time::Instant::now() >= beat_due {
                self.beat(vote).await;
                beat_due = tokio::time::Instant::now() + self.heartbeat;
            }
            // Unreachable, not a network error: openraft backs off before
            // trying again, and a body this node lacks stays lacking.
            let (entries, after) = run_blocking(|| batch(self.disk.as_ref(), next, last.index))
                .map_err(|e| Unreachable::new(&e))?;
            let request = SnapshotBodies {
                snapshot_id: meta.snapshot_id.clone(),
                entries,
            };
            let stored: Result<(), String> = self
                .call::<_, _, openraft::error::Infallible>(
                    RpcKind::SnapshotBodies,
                    &request,
                    BODIES_BATCH_TIMEOUT,
                )
                .await
                .map_err(|e| NetworkError::new(&e))?;
            stored.map_err(|e| NetworkError::new(&PeerError::Failed(e)))?;
            next = after;
        }
        Ok(())
    }

    /// An AppendEntries with no entries, no previous entry and no commit
    /// point: the follower takes it as its leader's heartbeat (its election
    /// timer starts over) and changes nothing else. Whatever it answers is
    /// left to openraft's own replication to find out.
    async fn beat(&mut self, vote: Vote) {
        let heartbeat = AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let answer: Result<AppendEntriesResponse, RpcError> = self
            .call(RpcKind::AppendEntries, &heartbeat, self.heartbeat)
            .await;
        if let Err(e) = answer {
            tracing::debug!(target = self.target, error = %e, "heartbeat while sending bodies");
        }
    }
}

/// Entries from `from` on, up to `to` and `BODIES_BATCH_BYTES`, and the
/// index after the last: from the kept import where it has them (an
/// installed snapshot's), else from the log.
fn batch(disk: &dyn Disk, from: u64, to: u64) -> Result<(Vec<LogEntry>, u64), BatchError> {
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut index = from;
    while index <= to && (entries.is_empty() || bytes < BODIES_BATCH_BYTES) {
        let entry = match disk.imported(index)? {
            Some(entry) => entry,
            None => disk.entry(index)?.ok_or(BatchError::Gone(index))?,
        };
        bytes += entry.1.len();
        entries.push(entry);
        index += 1;
    }
    Ok((entries, index))
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("log entry {0}, which a snapshot's bodies are in, is gone")]
    Gone(u64),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl<L: PeerLink> RaftNetwork<TypeConfig> for PeerClient<L> {
    /// The bodies first, then the snapshot in openraft's chunks. Cancelled
    /// (the leader stepped down) while sending bodies, it stops there; a
    /// failure waits out a pause before it is reported, as openraft tries
    /// again at once (a peer that was down drew thousands of tries a
    /// second).
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let cancel = cancel.shared();
        let meta = snapshot.meta.clone();
        tokio::select! {
            closed = cancel.clone() => return Err(closed.into()),
            sent = self.send_bodies(vote, &meta) => if let Err(e) = sent {
                tokio::time::sleep(BODIES_RETRY_PAUSE).await;
                return Err(e);
            },
        }
        Chunked::send_snapshot(self, vote, snapshot, cancel, option).await
    }

    /// After a failure to reach the peer: 50 ms, doubling up to 400 ms,
    /// instead of openraft's flat 500 ms, so a restarted peer is caught up
    /// soon.
    fn backoff(&self) -> Backoff {
        Backoff::new((0..).map(|failures: u32| Duration::from_millis(50 << failures.min(3))))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let answer = self
            .call(RpcKind::AppendEntries, &rpc, option.hard_ttl())
            .await;
        self.note_reach(&answer);
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.call(RpcKind::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        let answer: Result<VoteResponse, RpcError> =
            self.call(RpcKind::Vote, &rpc, option.hard_ttl()).await;
        // openraft logs every failed vote request at ERROR, a peer that is
        // merely down or not started yet included; the node's log filter
        // drops those (`is_peer_failure_log`) and they are logged here.
        match &answer {
            Err(RpcError::Unreachable(e)) => {
                tracing::debug!(target_node = self.target, error = %e, "vote request: peer unreachable")
            }
            Err(e) => tracing::warn!(target_node = self.target, error = %e, "vote request failed"),
            Ok(_) => {}
        }
        if planted::active(Bug::VotesAlwaysGranted) {
            return answer.map(|refused| VoteResponse {
                vote: rpc.vote,
                vote_granted: true,
                last_log_id: refused.last_log_id,
            });
        }
        answer
    }
}

/// openraft's ERROR events for a peer that failed an RPC, in 0.9.25 (its
/// target, the file's tail, the line): a vote request that timed out or
/// failed, and replication's RPC error (after its own WARN of the same
/// error). A peer down, or not started yet, is part of every cluster's
/// life, not an error of this node: `PeerClient` logs these again at the
/// level they deserve, once per change for replication.
const PEER_FAILURE_LOGS: [(&str, &str, u32); 3] = [
    ("openraft::core::raft_core", "core/raft_core.rs", 1099),
    ("openraft::core::raft_core", "core/raft_core.rs", 1112),
    ("openraft::replication", "replication/mod.rs", 284),
];

/// Whether `metadata` is one of `PEER_FAILURE_LOGS` (the node's log filter
/// drops them).
pub fn is_peer_failure_log(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() == tracing::Level::ERROR
        && PEER_FAILURE_LOGS.iter().any(|(target, file, line)| {
            metadata.target() == *target
                && metadata.file().is_some_and(|path| path.ends_with(file))
                && metadata.line() == Some(*line)
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::raft::typ::RaftError;
    use crate::raft::{decode, encode};
    use crate::storage::LocalDisk;

    /// What a peer was sent: each call's kind and request body.
    type Calls = Arc<Mutex<Vec<(RpcKind, Vec<u8>)>>>;

    /// A follower that takes `batch_takes` to store each batch of bodies,
    /// and notes what it was sent.
    #[derive(Clone)]
    struct SlowFollower {
        batch_takes: Duration,
        calls: Calls,
    }

    impl PeerLink for SlowFollower {
        async fn call(
            &self,
            kind: RpcKind,
            body: Vec<u8>,
            _ttl: Duration,
        ) -> Result<Vec<u8>, PeerError> {
            self.calls.lock().expect("calls").push((kind, body));
            let reply = match kind {
                RpcKind::SnapshotBodies => {
                    tokio::time::sleep(self.batch_takes).await;
                    encode(&Ok::<Result<(), String>, RaftError>(Ok(())))
                }
                RpcKind::AppendEntries => {
                    encode(&Ok::<_, RaftError>(AppendEntriesResponse::Success))
                }
                _ => unreachable!("only bodies and heartbeats are sent here"),
            };
            Ok(reply.expect("encode the reply"))
        }
    }

    /// Sending bodies that take longer than an election timeout, the
    /// leader keeps its heartbeat: an empty AppendEntries of its own vote
    /// before the first batch and after every batch that took longer than
    /// the interval, so the follower never stands for election meanwhile.
    #[tokio::test]
    async fn the_leader_keeps_its_heartbeat_while_bodies_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = LocalDisk::open(dir.path(), 1 << 20).expect("open disk");
        const BATCHES: u64 = 4;
        disk.append(records(1..1 + BATCHES, BODIES_BATCH_BYTES, b'b'))
            .expect("append");
        let follower = SlowFollower {
            batch_takes: Duration::from_millis(120),
            calls: Arc::default(),
        };
        let heartbeat = Duration::from_millis(40);
        let mut client = PeerClient {
            target: 2,
            link: Ok(follower.clone()),
            faults: None,
            disk: Arc::new(disk),
            heartbeat,
            unreachable: false,
        };
        let vote = Vote::new_committed(7, 1);
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(7, 1), BATCHES)),
            last_membership: Default::default(),
            snapshot_id: "7-1-6-100-bodies-1".to_string(),
        };
        client.send_bodies(vote, &meta).await.expect("bodies sent");

        let calls = follower.calls.lock().expect("calls").clone();
        let kinds: Vec<RpcKind> = calls.iter().map(|(kind, _)| *kind).collect();
        let expected: Vec<RpcKind> = (0..BATCHES)
            .flat_map(|_| [RpcKind::AppendEntries, RpcKind::SnapshotBodies])
            .collect();
        assert_eq!(kinds, expected, "a heartbeat before each slow batch");
        let beats: Vec<_> = calls
            .iter()
            .filter(|(kind, ..)| *kind == RpcKind::AppendEntries)
            .collect();
        for (_, body) in beats {
            let beat: AppendEntriesRequest = decode(body).expect("an AppendEntries");
            assert_eq!(beat.vote, vote);
            assert_eq!(beat.prev_log_id, None);
            assert!(beat.entries.is_empty());
            assert_eq!(beat.leader_commit, None);
        }
    }

    /// Records of `bytes` bytes at `indexes`, tagged with `tag`.
    fn records(indexes: std::ops::Range<u64>, bytes: usize, tag: u8) -> Vec<LogEntry> {
        indexes.map(|index| (index, vec![tag; bytes])).collect()
    }

    #[test]
    fn a_bodies_batch_stops_at_its_bound_and_prefers_the_import() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = LocalDisk::open(dir.path(), 1 << 20).expect("open disk");
        let mib = 1024 * 1024;
        disk.append(records(1..6, mib, b'l')).expect("append");
        // Two MiB records fill the 2 MiB batch; the next batch goes on.
        let (entries, next) = batch(&disk, 1, 5).expect("batch");
        assert_eq!(entries.len(), BODIES_BATCH_BYTES / mib);
        assert_eq!(next, 1 + entries.len() as u64);
        // A record past the bound still goes, alone; the range's end stops it.
        disk.append(records(6..7, 3 * mib, b'l')).expect("append");
        assert_eq!(batch(&disk, 6, 6).expect("batch").1, 7);
        // What an installed snapshot's import holds is read from there.
        disk.import("snap", records(2..4, 10, b'i'))
            .expect("import");
        assert!(disk.seal_import("snap", 2, 3));
        disk.keep_import("snap").expect("keep");
        let (entries, _) = batch(&disk, 2, 3).expect("batch");
        assert_eq!(entries, records(2..4, 10, b'i'));
        // A body neither has is an error, not a short batch.
        assert!(matches!(batch(&disk, 7, 7), Err(BatchError::Gone(7))));
    }
}
