//! openraft's network over gRPC: each RPC body is the openraft request,
//! postcard-encoded, and the answer is the encoded `Result` the remote Raft
//! returned.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use raftmq_proto::raft::raft_client::RaftClient;
use raftmq_proto::raft::RaftRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, Node, NodeId, RaftError, RpcError, VoteRequest, VoteResponse,
};
use super::{decode, encode, TypeConfig};
use crate::transport::{Connector, RpcFate, RpcFaults, TransportError};

/// Largest Raft RPC body; openraft's `max_payload_entries` keeps append
/// batches under it.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// The Raft group every RPC addresses; one group per cluster today.
pub const RAFT_GROUP: u64 = 0;

pub struct Network {
    connector: Arc<dyn Connector>,
    faults: Option<Arc<dyn RpcFaults>>,
}

impl Network {
    pub fn new(connector: Arc<dyn Connector>, faults: Option<Arc<dyn RpcFaults>>) -> Self {
        Network { connector, faults }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let client = self.connector.channel(&node.addr).map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        });
        PeerClient {
            target,
            client,
            faults: self.faults.clone(),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    client: Result<RaftClient<Channel>, TransportError>,
    faults: Option<Arc<dyn RpcFaults>>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Vote,
    AppendEntries,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self
            .client
            .as_mut()
            .map_err(|e| Unreachable::new(e))?
            .clone();
        let body = RaftRequest {
            group: RAFT_GROUP,
            body: encode(request).map_err(|e| NetworkError::new(&e))?.into(),
        };
        let fate = self
            .faults
            .as_ref()
            .map_or(RpcFate::Send, |f| f.fate(self.target));
        match fate {
            RpcFate::Send => {}
            RpcFate::Delay(delay) => tokio::time::sleep(delay).await,
            RpcFate::Duplicate => {
                let _ = send(client.clone(), rpc, body.clone(), ttl).await;
            }
            RpcFate::StaleCopy(delay) => {
                let (client, body) = (client.clone(), body.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = send(client, rpc, body, ttl).await;
                });
            }
        }
        let reply = send(client, rpc, body, ttl)
            .await
            .map_err(|status| match status.code() {
                // A peer past the deadline is slow, not gone: openraft
                // backs off only from an unreachable one (500 ms with
                // nothing replicated, which a busy follower, e.g. one
                // writing a snapshot, turned into a commit stall).
                tonic::Code::InvalidArgument
                | tonic::Code::Internal
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded => RpcError::Network(NetworkError::new(&status)),
                _ => RpcError::Unreachable(Unreachable::new(&status)),
            })?;
        let result: Result<Resp, RaftError<E>> =
            decode(&reply.into_inner().body).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RpcError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// One RPC on the wire, with its deadline.
async fn send(
    mut client: RaftClient<Channel>,
    rpc: Rpc,
    body: RaftRequest,
    ttl: Duration,
) -> Result<tonic::Response<raftmq_proto::raft::RaftResponse>, tonic::Status> {
    let mut request = tonic::Request::new(body);
    request.set_timeout(ttl);
    match rpc {
        Rpc::Vote => client.vote(request).await,
        Rpc::AppendEntries => client.append_entries(request).await,
        Rpc::InstallSnapshot => client.install_snapshot(request).await,
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
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
        self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
