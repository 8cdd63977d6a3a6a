//! Assembles a node from its configuration and its seams, and serves it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::raft::raft_server::RaftServer;
use raftmq_proto::v1::broker_server::BrokerServer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::Server;

use crate::access::Access;
use crate::broker::{
    compact_when_due, reap_orphans, tick_when_due, watch_leadership, Broker, LeaderClock,
    LeaderHistory, Proposer, Sessions,
};
use crate::clock::{Clock, SystemClock};
use crate::config::NodeConfig;
use crate::grpc::{
    date_header, request_stats, BrokerService, Gate, GrpcPeers, ObserveLayer, RaftService,
    RequestStats, Shares,
};
use crate::raft::{LogStore, RaftHandle, StateMachineStore, RAFT_MESSAGE_BYTES_MAX};
use crate::status_page::{History, StatusView};
use crate::storage::{Disk, LocalDisk};
use crate::tls::Tls;
use crate::transport::{Connector, RpcFaults, TcpConnector, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};

/// sled's page cache per node; sled holds only small records.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long a stopping node waits for its connections to close after it
/// has ended every stream; unary calls still waiting for a commit are cut
/// off then (their outcome is unknown to the client, which retries).
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Streams a client may reset before the server has taken them up, per
/// connection, before h2 closes it (ENHANCE_YOUR_CALM, its guard against
/// rapid-reset floods; 20 by default). A client whose leader just failed
/// drops its whole publish window at once (256 requests by default, more
/// with several producers on one connection), so the default cut off
/// clients during every failover on the compose cluster.
const PENDING_RESETS_MAX: usize = 4_096;
/// HTTP/2 streams one connection may have open at once (consumers and
/// publish streams are long lived): above a connection's consumer share.
const STREAMS_PER_CONNECTION_MAX: u32 = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("storage")]
    Disk(#[from] crate::storage::StorageError),
    #[error("loading the snapshot: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Raft(#[from] crate::raft::RaftError),
    #[error("the raft core stopped: {0}")]
    RaftStopped(String),
    #[error("data directory")]
    Format(#[from] crate::raft::FormatError),
    #[error("server")]
    Serve(#[from] tonic::transport::Error),
    #[error("i/o")]
    Io(#[from] std::io::Error),
    #[error("users file: {0}")]
    Access(#[from] crate::access::AccessError),
}

/// What the node takes from outside: disk, network, wall clock, and the id
/// of this boot. The simulation hands in its own (DESIGN.md, "Seams").
pub struct Seams {
    pub disk: Arc<dyn Disk>,
    pub connector: Arc<dyn Connector>,
    pub clock: Arc<dyn Clock>,
    /// Distinguishes this run of the node from earlier ones, so a replayed
    /// log never reaches a new session.
    pub boot_id: u64,
    /// Duplicates and delays of Raft RPCs; none in production.
    pub rpc_faults: Option<Arc<dyn RpcFaults>>,
}

impl Seams {
    /// Real storage in `data_dir`, TCP (with `tls`, if given), the system
    /// clock.
    pub fn production(data_dir: &Path, tls: Option<&Tls>) -> Result<Self, NodeError> {
        Ok(Seams {
            disk: Arc::new(LocalDisk::open(data_dir, CACHE_BYTES)?),
            connector: Arc::new(TcpConnector {
                tls: tls.map(Tls::client),
            }),
            clock: Arc::new(SystemClock),
            boot_id: rand::random(),
            rpc_faults: None,
        })
    }
}

/// A running node; clones share it.
#[derive(Clone)]
pub struct Node {
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    /// Every gRPC request, timed (the metrics page).
    requests: Arc<RequestStats>,
    /// Who gets in (both services).
    gate: Arc<Gate>,
    /// What each client may hold at once (the broker service).
    shares: Arc<Shares>,
    /// The listener's TLS; `None` is plaintext.
    tls: Option<Tls>,
}

impl Node {
    /// Opens storage, starts Raft, and on a node with an empty log
    /// initializes the cluster with every configured peer as a voter (every
    /// node may do so with the same membership).
    pub async fn start(config: NodeConfig, seams: Seams) -> Result<Node, NodeError> {
        if config.addresses(config.id).is_none() {
            return Err(NodeError::Config(format!(
                "node {} is not in its peer list",
                config.id
            )));
        }
        crate::raft::check_format(seams.disk.as_ref())?;
        let access = match &config.users {
            Some(path) => Some(Arc::new(Access::open(path)?)),
            None => None,
        };
        let gate = Arc::new(Gate::new(
            config.cluster_id.clone(),
            config.tls.is_some(),
            access,
        ));
        let shares = Arc::new(Shares::new(config.limits.connection, config.limits.user));
        let sessions = Arc::new(Sessions::new(config.id, seams.boot_id));
        let log = LogStore::new(seams.disk.clone());
        let machine = StateMachineStore::open(
            seams.disk.clone(),
            sessions.clone(),
            seams.clock.clone(),
            config.body_cache_bytes,
        )
        .map_err(|e| NodeError::Snapshot(e.to_string()))?;
        let raft = RaftHandle::start(
            &config,
            log.clone(),
            machine.clone(),
            Arc::new(GrpcPeers::new(seams.connector.clone(), &config.cluster_id)),
            seams.rpc_faults.clone(),
        )
        .await?;

        // What the leader stamps, and what the ticker compares deadlines
        // with: the wall clock, unless it lags the state machine's time.
        let leader_clock: Arc<dyn Clock> =
            Arc::new(LeaderClock::new(seams.clock.clone(), machine.clone()));
        let proposer = Proposer::start(raft.clone(), leader_clock.clone());
        let leader_history = Arc::new(LeaderHistory::new());
        tokio::spawn(watch_leadership(
            raft.clone(),
            proposer.clone(),
            leader_history.clone(),
        ));
        let broker = Broker {
            id: config.id,
            raft,
            proposer,
            sessions,
            bodies: machine.bodies(),
            machine,
            log,
            limits: config.limits,
            leader_history,
            stopping: tokio::sync::watch::Sender::new(false),
        };
        let broker = Arc::new(broker);
        tokio::spawn(reap_orphans(broker.clone()));
        tokio::spawn(tick_when_due(broker.clone(), leader_clock));
        tokio::spawn(compact_when_due(broker.clone(), config.compact_frees_bytes));
        Ok(Node {
            broker,
            clock: seams.clock,
            requests: Arc::new(request_stats()),
            gate,
            shares,
            tls: config.tls.clone(),
        })
    }

    /// What this node's Raft knows now (the simulation's checkers read it).
    pub fn raft_status(&self) -> crate::raft::RaftStatus {
        self.broker.raft.status()
    }

    /// The log index this replica's state reflects, as the state machine
    /// itself records it (the simulation checks that it never goes back).
    pub fn applied_index(&self) -> Option<u64> {
        self.broker.machine.applied_index()
    }

    /// Reads this replica's applied state (tests and the simulation check it).
    pub fn read_state<T>(&self, f: impl FnOnce(&crate::machine::State) -> T) -> T {
        self.broker.machine.read(f)
    }

    /// The body at `at`, as this node's reader finds it (the simulation
    /// compares replicas whose records name different places for one body).
    pub fn body(&self, at: crate::machine::BodyRef) -> Result<crate::machine::NewMessage, String> {
        self.broker.bodies.body(at).map_err(|e| e.to_string())
    }

    /// The node's metrics in Prometheus text format.
    pub fn metrics(&self) -> String {
        crate::metrics::render(
            &self.broker,
            &self.requests,
            self.gate.refusals(),
            &self.shares,
        )
    }

    /// Reads the users file again (SIGHUP): how many users it has now. On
    /// an error the users in force stay.
    pub fn reload_users(&self) -> Result<Option<usize>, NodeError> {
        match self.gate.access() {
            Some(access) => Ok(Some(access.reload()?)),
            None => Ok(None),
        }
    }

    /// What the status page shows now, with `history`'s samples.
    pub fn status_view(&self, history: &History) -> StatusView {
        crate::status_page::view(&self.broker, history)
    }

    /// Adds a sample of the cluster-wide totals to `history`.
    pub fn sample_into(&self, history: &History) {
        history.record(&self.broker, self.clock.now_ms());
    }

    /// Serves the broker and Raft services on the accepted connections until
    /// `shutdown` completes, then stops: a leader hands leadership over,
    /// every stream ends with UNAVAILABLE (naming the leader), connections get `STOP_GRACE` to close, Raft stops and
    /// the records are flushed. Returns an error, at once, if the Raft core
    /// stops on its own: the process should exit so that its supervisor
    /// restarts it.
    pub async fn serve<I, IO, IE>(
        &self,
        incoming: I,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError>
    where
        I: Stream<Item = Result<IO, IE>>,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_bytes_max = self.broker.limits.request_bytes_max;
        let broker = BrokerServer::new(BrokerService::new(
            self.broker.clone(),
            self.gate.clone(),
            self.shares.clone(),
        ))
        .max_decoding_message_size(request_bytes_max)
        .max_encoding_message_size(request_bytes_max);
        let raft = RaftServer::new(RaftService::new(
            self.broker.raft.clone(),
            self.gate.clone(),
        ))
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
        let broker_of_stop = self.broker.clone();
        let shutdown = async move {
            shutdown.await;
            broker_of_stop.hand_off_before_stop().await;
            broker_of_stop.stopping.send_replace(true);
        };
        let mut server = Server::builder();
        if let Some(tls) = &self.tls {
            server = server.tls_config(tls.server())?;
        }
        let served = server
            .http2_max_pending_accept_reset_streams(Some(PENDING_RESETS_MAX))
            .max_concurrent_streams(Some(STREAMS_PER_CONNECTION_MAX))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(date_header(self.clock.clone()))
            .layer(ObserveLayer(self.requests.clone()))
            .add_service(broker)
            .add_service(raft)
            .serve_with_incoming_shutdown(incoming, shutdown);
        let mut stopping = self.broker.stopping.subscribe();
        let grace_over = async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let served = tokio::select! {
            served = served => served.map_err(NodeError::from),
            () = grace_over => {
                tracing::info!("connections still open after the grace period; closing them");
                Ok(())
            }
            reason = self.broker.raft.failure() => Err(NodeError::RaftStopped(reason)),
        };
        self.shutdown().await;
        served
    }

    /// Stops Raft and flushes the records. A node stopped without this
    /// (a crash) loses nothing acknowledged, only a fresher commit point.
    pub async fn shutdown(&self) {
        self.broker.stopping.send_replace(true);
        self.broker.raft.shutdown().await;
        if let Err(e) = self.broker.log.flush() {
            tracing::warn!(error = %e, "flushing records");
        }
    }
}
