//! Serves the internal Raft RPCs: carries the request body to the local
//! Raft (`raft::RaftHandle::serve_rpc`, which owns the wire format) and its
//! reply back.

use raftmq_proto::raft::raft_server::Raft as RaftRpc;
use raftmq_proto::raft::{RaftRequest, RaftResponse};
use tonic::{Request, Response, Status};

use super::status::raft_wire;
use crate::raft::{RaftHandle, RpcKind};

pub struct RaftService {
    raft: RaftHandle,
}

impl RaftService {
    pub fn new(raft: RaftHandle) -> Self {
        RaftService { raft }
    }

    async fn serve(
        &self,
        kind: RpcKind,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let request = request.into_inner();
        let body = self
            .raft
            .serve_rpc(kind, request.group, &request.body)
            .await
            .map_err(|e| raft_wire(&e))?;
        Ok(Response::new(RaftResponse { body: body.into() }))
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        self.serve(RpcKind::Vote, request).await
    }

    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        self.serve(RpcKind::AppendEntries, request).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        self.serve(RpcKind::InstallSnapshot, request).await
    }

    async fn snapshot_bodies(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        self.serve(RpcKind::SnapshotBodies, request).await
    }

    async fn timeout_now(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        self.serve(RpcKind::TimeoutNow, request).await
    }
}
