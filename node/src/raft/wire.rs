//! The Raft RPCs on the wire, both halves: a request body is the openraft
//! request, postcard-encoded; a reply body is the encoded `Result` the
//! remote Raft returned, its error included. The gRPC layer carries these
//! bodies in `RaftRequest` / `RaftResponse` and knows nothing else of them.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::typ::{Raft, RaftError};
use super::{decode, encode, CodecError};

/// Largest Raft RPC body; openraft's `max_payload_entries` keeps append
/// batches under it.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// The Raft group every RPC addresses; one group per cluster today.
pub const RAFT_GROUP: u64 = 0;

/// The three Raft RPCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcKind {
    Vote,
    AppendEntries,
    InstallSnapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("unknown raft group {0}")]
    UnknownGroup(u64),
    #[error("bad raft request: {0}")]
    BadRequest(CodecError),
    #[error("encoding the raft reply: {0}")]
    Reply(CodecError),
}

/// The server half: decodes a request of `kind` for `raft`, hands it over,
/// and encodes whatever it answered.
pub(super) async fn serve(
    raft: &Raft,
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
        RpcKind::InstallSnapshot => reply(&raft.install_snapshot(request(body)?).await),
    }
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
