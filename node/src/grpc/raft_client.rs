//! The Raft layer's peers over gRPC: a `raft::PeerLink` per peer, carrying
//! the request bodies `raft::wire` makes in a `RaftRequest`.

use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::raft::raft_client::RaftClient;
use raftmq_proto::raft::RaftRequest;
use tonic::transport::Channel;
use tonic::Code;

use crate::raft::{PeerError, PeerLink, Peers, RpcKind, RAFT_GROUP, RAFT_MESSAGE_BYTES_MAX};
use crate::transport::Connector;

/// Peers reached through the node's connector.
pub struct GrpcPeers {
    connector: Arc<dyn Connector>,
    /// Sent with every RPC; peers of another cluster refuse it.
    cluster: Arc<str>,
}

impl GrpcPeers {
    pub fn new(connector: Arc<dyn Connector>, cluster: &str) -> Self {
        GrpcPeers {
            connector,
            cluster: cluster.into(),
        }
    }
}

impl Peers for GrpcPeers {
    type Link = GrpcPeer;

    fn link(&self, addr: &str) -> Result<GrpcPeer, PeerError> {
        let channel = self
            .connector
            .channel(addr)
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        Ok(GrpcPeer {
            client: RaftClient::new(channel)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
            cluster: self.cluster.clone(),
        })
    }
}

#[derive(Clone)]
pub struct GrpcPeer {
    client: RaftClient<Channel>,
    cluster: Arc<str>,
}

impl PeerLink for GrpcPeer {
    async fn call(
        &self,
        kind: RpcKind,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(RaftRequest {
            group: RAFT_GROUP,
            body: body.into(),
            cluster_id: self.cluster.to_string(),
        });
        request.set_timeout(ttl);
        let reply = match kind {
            RpcKind::Vote => client.vote(request).await,
            RpcKind::AppendEntries => client.append_entries(request).await,
            RpcKind::InstallSnapshot => client.install_snapshot(request).await,
            RpcKind::SnapshotBodies => client.snapshot_bodies(request).await,
            RpcKind::TimeoutNow => client.timeout_now(request).await,
        };
        match reply {
            Ok(reply) => Ok(reply.into_inner().body.into()),
            // Slow or refused for this request, not gone: retry at once.
            Err(status)
                if matches!(
                    status.code(),
                    Code::InvalidArgument
                        | Code::FailedPrecondition
                        | Code::Internal
                        | Code::Cancelled
                        | Code::DeadlineExceeded
                ) =>
            {
                Err(PeerError::Failed(status.to_string()))
            }
            Err(status) => Err(PeerError::Unreachable(status.to_string())),
        }
    }
}
