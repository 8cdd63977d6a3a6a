//! Serves the internal Raft RPCs of this cluster's nodes (`Gate::peer`): carries the request body to the local
//! Raft (`raft::RaftHandle::serve_rpc`, which owns the wire format) and its
//! reply back.

use raftmq_proto::raft::raft_server::Raft as RaftRpc;
use raftmq_proto::raft::{RaftRequest, RaftResponse};
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::status::raft_wire;
use super::Gate;
use crate::raft::{RaftHandle, RpcKind};

pub struct RaftService {
    raft: RaftHandle,
    /// Only nodes of this cluster get through.
    gate: Arc<Gate>,
}

impl RaftService {
    pub fn new(raft: RaftHandle, gate: Arc<Gate>) -> Self {
        RaftService { raft, gate }
    }

    async fn serve(
        &self,
        kind: RpcKind,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        self.gate.peer(&request, &request.get_ref().cluster_id)?;
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
