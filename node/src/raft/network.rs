//! openraft's network over the `Peers` seam: the bodies come from `wire`,
//! the gRPC layer carries them (`grpc::GrpcPeers`), and the simulation's
//! RPC faults act here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, Node, NodeId, RpcError, VoteRequest, VoteResponse,
};
use super::wire::{decode_reply, encode_request, RpcKind};
use super::TypeConfig;
use crate::planted::{self, Bug};
use crate::transport::{RpcFate, RpcFaults};

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
}

impl<P: Peers> Network<P> {
    pub fn new(peers: Arc<P>, faults: Option<Arc<dyn RpcFaults>>) -> Self {
        Network { peers, faults }
    }
}

impl<P: Peers> RaftNetworkFactory<TypeConfig> for Network<P> {
    type Network = PeerClient<P::Link>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            target,
            link: self.peers.link(&node.addr).map_err(|e| e.to_string()),
            faults: self.faults.clone(),
        }
    }
}

pub struct PeerClient<L> {
    target: NodeId,
    link: Result<L, String>,
    faults: Option<Arc<dyn RpcFaults>>,
}

impl<L: PeerLink> PeerClient<L> {
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

impl<L: PeerLink> RaftNetwork<TypeConfig> for PeerClient<L> {
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
        self.call(RpcKind::AppendEntries, &rpc, option.hard_ttl())
            .await
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
