//! Serves the internal Raft RPCs: decodes openraft's request, hands it to the
//! local Raft node, and encodes whatever it answered, error included.

use raftmq_proto::raft::raft_server::Raft as RaftRpc;
use raftmq_proto::raft::{RaftRequest, RaftResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::raft::typ::Raft;
use crate::raft::{decode, encode};

pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> Self {
        RaftService { raft }
    }
}

fn unpack<T: DeserializeOwned>(request: Request<RaftRequest>) -> Result<T, Status> {
    let request = request.into_inner();
    if request.group != crate::raft::RAFT_GROUP {
        return Err(Status::invalid_argument(format!(
            "unknown raft group {}",
            request.group
        )));
    }
    decode(&request.body).map_err(|e| Status::invalid_argument(format!("bad raft request: {e}")))
}

fn pack<T: Serialize>(result: &T) -> Result<Response<RaftResponse>, Status> {
    let body =
        encode(result).map_err(|e| Status::internal(format!("encoding raft response: {e}")))?;
    Ok(Response::new(RaftResponse { body: body.into() }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        pack(&self.raft.vote(unpack(request)?).await)
    }

    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        pack(&self.raft.append_entries(unpack(request)?).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        pack(&self.raft.install_snapshot(unpack(request)?).await)
    }
}
