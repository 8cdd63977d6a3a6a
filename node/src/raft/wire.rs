//! The Raft RPCs on the wire, both halves: a request body is the openraft
//! request, postcard-encoded; a reply body is the encoded `Result` the
//! remote Raft returned, its error included. The gRPC layer carries these
//! bodies in `RaftRequest` / `RaftResponse` and knows nothing else of them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::handoff::stand;
use super::runtime::run_blocking;
use super::state_machine::body_floor;
use super::typ::{InstallSnapshotRequest, Raft, RaftError, SnapshotMeta};
use super::{decode, encode, CodecError};
use crate::storage::{Disk, LogEntry};

/// Largest Raft RPC body; openraft's `max_payload_entries` keeps append
/// batches under it.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// The Raft group every RPC addresses; one group per cluster today.
pub const RAFT_GROUP: u64 = 0;

/// The three Raft RPCs, the bodies sent ahead of a snapshot, and the
/// hand-off's request to stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcKind {
    Vote,
    AppendEntries,
    InstallSnapshot,
    SnapshotBodies,
    /// A leadership hand-off: stand for election now (`handoff`).
    TimeoutNow,
}

/// Log entries sent ahead of snapshot `snapshot_id`: the bodies its
/// messages need, in index order, a batch at a time. The reply carries
/// the follower's `Result<(), String>` of storing them.
#[derive(Serialize, Deserialize, Debug)]
pub struct SnapshotBodies {
    pub snapshot_id: String,
    pub entries: Vec<LogEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("unknown raft group {0}")]
    UnknownGroup(u64),
    #[error("bad raft request: {0}")]
    BadRequest(CodecError),
    #[error("encoding the raft reply: {0}")]
    Reply(CodecError),
    /// The last chunk of a snapshot came before all of its bodies: the
    /// sender starts it over, bodies first.
    #[error("snapshot {0} arrived without the log entries its bodies are in")]
    BodiesMissing(String),
}

/// The server half: decodes a request of `kind` for `raft`, hands it over,
/// and encodes whatever it answered.
/// The server half: decodes a request of `kind` for `raft`, hands it over,
/// and encodes whatever it answered. Bodies go to `disk`'s imports, and a
/// snapshot's last chunk is taken only once they are all there.
pub(super) async fn serve(
    raft: &Raft,
    disk: &dyn Disk,
    kind: RpcKind,
    group: u64,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    if group != RAFT_GROUP {
        return Err(WireError::UnknownGroup(group));
    }
    match kind {
        RpcKind::Vote => reply(&raft.vote(request(body)?).await),
        RpcKind::AppendEntries => reply(&raft.append_entries(request(body)?).await),
        RpcKind::InstallSnapshot => {
            let chunk: InstallSnapshotRequest = request(body)?;
            if chunk.done && !bodies_whole(disk, &chunk.meta) {
                return Err(WireError::BodiesMissing(chunk.meta.snapshot_id));
            }
            reply(&raft.install_snapshot(chunk).await)
        }
        RpcKind::SnapshotBodies => {
            let bodies: SnapshotBodies = request(body)?;
            let stored = run_blocking(|| disk.import(&bodies.snapshot_id, bodies.entries))
                .map_err(|e| e.to_string());
            // Shaped as the Raft RPCs' replies are: this node's Raft
            // "answered" what its disk did.
            reply(&Ok::<_, RaftError>(stored))
        }
        RpcKind::TimeoutNow => reply(&stand(raft, &request(body)?).await),
    }
}

/// Whether every entry from the snapshot's body floor to its last entry
/// was received (and is then sealed against late copies).
fn bodies_whole(disk: &dyn Disk, meta: &SnapshotMeta) -> bool {
    let (Some(floor), Some(last)) = (body_floor(&meta.snapshot_id), meta.last_log_id) else {
        return true;
    };
    disk.seal_import(&meta.snapshot_id, floor, last.index)
}

fn request<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    decode(body).map_err(WireError::BadRequest)
}

fn reply<T: Serialize>(result: &T) -> Result<Vec<u8>, WireError> {
    encode(result).map_err(WireError::Reply)
}

/// The client half: the body of a request.
pub(super) fn encode_request<T: Serialize>(request: &T) -> Result<Vec<u8>, CodecError> {
    encode(request)
}

/// The client half: what the remote Raft answered.
pub(super) fn decode_reply<T: DeserializeOwned, E: DeserializeOwned>(
    body: &[u8],
) -> Result<Result<T, RaftError<E>>, CodecError> {
    decode(body)
}
