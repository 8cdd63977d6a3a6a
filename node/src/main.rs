//! The `raftmq-node` binary: run one node, or a local development cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use axum::http::header::CONTENT_TYPE;
use clap::{Parser, Subcommand};
use raftmq_node::access::hash_secret;
use raftmq_node::certs::{Authority, Subject};
use raftmq_node::config::CLUSTER_ID_DEFAULT;
use raftmq_node::status_page::{self, History};
use raftmq_node::tls::{Tls, TlsFiles};
use raftmq_node::{Node, NodeConfig, Seams};
use std::sync::Arc;
use std::time::Duration;

use raftmq_proto::v1::broker_client::BrokerClient;
use raftmq_proto::v1::{ClusterStatusRequest, TransferLeaderRequest};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Endpoint;

#[derive(Parser)]
#[command(name = "raftmq-node", version, about = "raftmq broker node")]
struct Cli {
    /// How log lines are written: `text` for people, `json` (one object
    /// per line, with the request's span fields) for log collectors.
    /// `RUST_LOG` chooses what is logged.
    #[arg(long, global = true, env = "RAFTMQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node of a cluster.
    Run(Box<RunArgs>),
    /// Runs a local cluster of several nodes in this process, on loopback.
    Dev(DevArgs),
    /// Exits 0 when the node at --addr answers, its Raft core runs and it
    /// has known a leader within --leaderless-max-secs; 1 otherwise (for
    /// container health checks).
    Health(HealthArgs),
    /// Asks the node at --addr, if it leads, to hand leadership to an
    /// up-to-date follower; exits 0 when it does not lead (a Kubernetes
    /// preStop hook: the pod's SIGTERM then finds nothing to hand over).
    HandOff(HandOffArgs),
    /// Makes a development CA and certificates it signs for nodes and
    /// users (PEM files in --out), for TLS with `run --tls-*`.
    Certs(CertsArgs),
    /// Makes a new token for a user: prints the token for the client, and
    /// the hashed secret for the users file.
    Token(TokenArgs),
}

/// TLS from PEM files: this node's certificate and key, and the CA that
/// signed every node's (and client certificates). All three or none.
#[derive(clap::Args)]
struct TlsArgs {
    /// This node's certificate (PEM), with the SPIFFE id
    /// spiffe://CLUSTER/node/ID: TLS for clients and peers.
    #[arg(long, env = "RAFTMQ_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "RAFTMQ_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that signed every node's certificate and the clients'.
    #[arg(long, env = "RAFTMQ_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    fn load(&self) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        Ok(Some(Tls::load(&files)?))
    }
}

#[derive(Parser)]
struct CertsArgs {
    /// Directory the files go to (created): ca.pem, node-ID.pem and
    /// node-ID.key for each node, user-NAME.pem and user-NAME.key for each
    /// user.
    #[arg(long)]
    out: PathBuf,
    /// The cluster the certificates are for (`run --cluster-id`).
    #[arg(long, default_value = CLUSTER_ID_DEFAULT)]
    cluster_id: String,
    /// A node as ID=HOST[+HOST...]: the names and IP addresses peers and
    /// clients reach it by.
    #[arg(long = "node", value_parser = parse_node_hosts, required = true)]
    nodes: Vec<(u64, Vec<String>)>,
    /// A user whose client certificate to make.
    #[arg(long = "user")]
    users: Vec<String>,
}

#[derive(Parser)]
struct TokenArgs {
    /// The user's name, as in the users file.
    name: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Parser)]
struct HandOffArgs {
    /// The node's gRPC address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// How long to wait for the hand-off.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

#[derive(Parser)]
struct HealthArgs {
    /// The node's gRPC address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 2)]
    timeout_secs: u64,
    /// Longest time without a known leader that still counts as healthy:
    /// longer than an election, shorter than a person would wait.
    #[arg(long, default_value_t = 30)]
    leaderless_max_secs: u64,
    /// Also require that the node is a voter and has applied all but
    /// `READY_APPLY_LAG_MAX` of the entries it knows committed: joined and
    /// caught up (a readiness probe).
    #[arg(long)]
    ready: bool,
}

/// Committed entries a node may still have to apply and count as ready.
const READY_APPLY_LAG_MAX: u64 = 1_000;

#[derive(Parser)]
struct RunArgs {
    /// This node's id; it must appear in --peers.
    #[arg(
        long,
        env = "RAFTMQ_NODE_ID",
        required_unless_present = "id_from_hostname"
    )]
    id: Option<u64>,
    /// Take the id from the host name's ordinal instead: `raftmq-0` is
    /// node 1, `raftmq-2` node 3 (a Kubernetes StatefulSet's pods).
    #[arg(long, env = "RAFTMQ_ID_FROM_HOSTNAME", conflicts_with = "id")]
    id_from_hostname: bool,
    /// Every initial voter as ID=HOST:PORT, comma separated, this node
    /// included. The address is where peers (and, without --advertise,
    /// clients) reach that node.
    #[arg(long, env = "RAFTMQ_PEERS", value_delimiter = ',', value_parser = parse_peer, required_unless_present = "join")]
    peers: Vec<(u64, String)>,
    /// Join a running cluster instead: HOST:PORT of any of its nodes. The
    /// node starts with an empty data directory (or the one it joined
    /// with) and asks the leader to add it, as `raftmq cluster add-node`
    /// does; needs --addr.
    #[arg(long, env = "RAFTMQ_JOIN", conflicts_with = "peers", requires = "addr")]
    join: Option<String>,
    /// Where peers reach this node (HOST:PORT) [default: its entry in
    /// --peers].
    #[arg(long, env = "RAFTMQ_ADDR")]
    addr: Option<String>,
    /// Where clients reach a node, as ID=HOST:PORT, comma separated, for
    /// each node whose client address differs from its peer address (a
    /// joining node gives its own). Recorded in the membership when the
    /// cluster is created or the node added: redirects and `cluster
    /// status` name these.
    #[arg(long, env = "RAFTMQ_ADVERTISE", value_delimiter = ',', value_parser = parse_peer)]
    advertise: Vec<(u64, String)>,
    /// Socket address to listen on [default: this node's peer address].
    #[arg(long, env = "RAFTMQ_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for this node's log, vote and snapshots.
    #[arg(long, env = "RAFTMQ_DATA", default_value = "./data/node")]
    data: PathBuf,
    /// Largest message accepted (payload + key + headers), in bytes.
    #[arg(long, env = "RAFTMQ_MESSAGE_BYTES_MAX", default_value_t = 1024 * 1024)]
    message_bytes_max: usize,
    /// Serve Prometheus metrics at http://IP:PORT/metrics.
    #[arg(long, env = "RAFTMQ_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log entries between snapshots at least; a snapshot also waits until
    /// the log written since the last one outweighs it. The log behind a
    /// snapshot is purged.
    #[arg(long, env = "RAFTMQ_SNAPSHOT_EVERY", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,
    /// This cluster's id, sent with every Raft RPC: a node refuses RPCs of
    /// another cluster (and, with TLS, any without a node certificate
    /// naming this cluster).
    #[arg(long, env = "RAFTMQ_CLUSTER_ID", default_value = CLUSTER_ID_DEFAULT)]
    cluster_id: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// The users file (TOML; README, "Security"): clients must then show a
    /// token or a client certificate, and may do what their permissions
    /// say. Read again on SIGHUP. Without it anyone may do anything.
    #[arg(long, env = "RAFTMQ_USERS")]
    users: Option<PathBuf>,
}

#[derive(Parser)]
struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    nodes: u64,
    /// Port of node 1; node N listens on base-port + N - 1.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Loopback host to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Data directory; node N keeps its files in DATA/nodeN.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Serve node N's Prometheus metrics on port METRICS_BASE_PORT + N - 1.
    #[arg(long)]
    metrics_base_port: Option<u16>,
}

fn parse_peer(text: &str) -> Result<(u64, String), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {text:?}"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("bad node id in {text:?}"))?;
    Ok((id, addr.trim().to_string()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });
    let result = match cli.command {
        Command::Run(args) => run(*args, stop).await,
        Command::Dev(args) => dev(args, stop).await,
        Command::Health(args) => health(args).await,
        Command::HandOff(args) => hand_off(args).await,
        Command::Certs(args) => certs(&args),
        Command::Token(args) => token(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,openraft=error,sled=warn".into());
    // The second filter passes on the first one's most verbose level:
    // without that hint tracing takes TRACE as the global maximum, and
    // every `log` record of sled and every `debug!` of openraft was built
    // and filtered at run time, a tenth of a node's CPU in a drain.
    let verbose = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let routine = tracing_subscriber::filter::filter_fn(move |metadata| {
        *metadata.level() <= verbose && !raftmq_node::raft::is_peer_failure_log(metadata)
    })
    .with_max_level_hint(verbose);
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
        // Colour codes only for a person at a terminal, not in log files.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter).with_filter(routine))
        .init();
}

/// Ctrl-C, or SIGTERM (what `docker stop` and service managers send).
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "SIGTERM handler not installed; Ctrl-C still stops");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(args: RunArgs, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let id = match args.id {
        Some(id) => id,
        None => id_from_hostname()?,
    };
    let mut peers: BTreeMap<u64, String> = args.peers.into_iter().collect();
    if let Some(addr) = &args.addr {
        if peers.get(&id).is_some_and(|own| own != addr) {
            bail!("--addr {addr} differs from node {}'s entry in --peers", id);
        }
        peers.insert(id, addr.clone());
    }
    let Some(own) = peers.get(&id).cloned() else {
        bail!("node {} is not in --peers", id);
    };
    let listen = match args.listen {
        Some(listen) => listen,
        None => own
            .as_str()
            .parse()
            .with_context(|| format!("--listen is needed: {own:?} is not an IP:PORT"))?,
    };
    let mut config = NodeConfig::new(id, peers);
    config.advertise = args.advertise.into_iter().collect();
    config.limits.message_bytes_max = args.message_bytes_max;
    config.snapshot_every = args.snapshot_every;
    config.join = args.join.is_some();
    config.cluster_id = args.cluster_id;
    config.tls = args.tls.load()?;
    config.users = args.users;
    let advertised = config.advertise.get(&id).cloned();
    let joined = args.join.map(|seed| {
        let stop = stop.clone();
        let tls = config.tls.clone();
        tokio::spawn(join(seed, id, own, advertised, tls, stop))
    });
    let listener = bind(id, listen).await?;
    let served = serve(config, &args.data, listener, args.metrics_listen, stop).await;
    if let Some(joined) = joined {
        joined.abort();
    }
    served
}

/// Asks the cluster at `seed` to add this node, as a client would (to the
/// leader, following redirects), until it is a voter or `stop` turns true.
/// Adding a member again changes nothing, so a restarted node asks again.
async fn join(
    seed: String,
    id: u64,
    addr: String,
    client_addr: Option<String>,
    tls: Option<Tls>,
    mut stop: watch::Receiver<bool>,
) {
    // Each call waits while the node catches up (the leader gives it 30 s
    // and then answers that it is still behind); the client retries.
    let options = raftmq_client::ClientOptions {
        rpc_timeout: Duration::from_secs(35),
        retry_deadline: Duration::from_secs(120),
        tls: tls.as_ref().map(node_client_tls),
        ..Default::default()
    };
    const TRIES_MAX: u32 = 10;
    let client = match raftmq_client::Client::connect_with(vec![seed.clone()], options) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(%seed, error = %e, "cannot join: bad seed address");
            return;
        }
    };
    for attempt in 1..=TRIES_MAX {
        tracing::info!(%seed, attempt, "asking the cluster to add this node");
        let added = tokio::select! {
            added = client.add_node(id, &addr, client_addr.as_deref()) => added,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match added {
            Ok(members) => {
                let voters: Vec<u64> = members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| m.node_id)
                    .collect();
                tracing::info!(?voters, "joined the cluster as a voter");
                return;
            }
            Err(e) => tracing::warn!(attempt, error = %e, "not added yet"),
        }
    }
    tracing::error!(%seed, "gave up joining after {TRIES_MAX} tries; add it with `raftmq cluster add-node {id} {addr}`");
}

async fn dev(args: DevArgs, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let peers: BTreeMap<u64, String> = (1..=args.nodes)
        .map(|id| {
            (
                id,
                format!("{}:{}", args.host, u64::from(args.base_port) + id - 1),
            )
        })
        .collect();
    let servers: Vec<&str> = peers.values().map(String::as_str).collect();
    println!(
        "raftmq dev cluster: {} nodes, data in {}",
        args.nodes,
        args.data.display()
    );
    for (id, addr) in &peers {
        println!("  node {id}: {addr}");
    }
    println!("try: raftmq --servers {} cluster status", servers.join(","));
    println!("Ctrl-C stops every node.");
    // Every node listens before any starts: a node that asked for votes
    // from a peer not yet bound would log each refused connection.
    let mut listeners = Vec::with_capacity(peers.len());
    for (id, addr) in &peers {
        let listen: SocketAddr = addr
            .parse()
            .with_context(|| format!("bad address {addr:?}"))?;
        listeners.push(bind(*id, listen).await?);
    }
    let mut nodes = tokio::task::JoinSet::new();
    for ((id, _), listener) in peers.iter().zip(listeners) {
        let config = NodeConfig::new(*id, peers.clone());
        let data = args.data.join(format!("node{id}"));
        let metrics = match args.metrics_base_port {
            Some(base) => {
                let port = u64::from(base) + id - 1;
                Some(
                    format!("{}:{port}", args.host)
                        .parse()
                        .context("bad metrics address")?,
                )
            }
            None => None,
        };
        let stop = stop.clone();
        nodes.spawn(async move { serve(config, &data, listener, metrics, stop).await });
    }
    while let Some(result) = nodes.join_next().await {
        result??;
    }
    Ok(())
}

async fn bind(id: u64, listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("node {id}: binding {listen}"))
}

/// Starts the node on sled in `data` and serves it on `listener` (and its
/// metrics, if asked) until `stop` turns true.
async fn serve(
    config: NodeConfig,
    data: &Path,
    listener: TcpListener,
    metrics: Option<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let id = config.id;
    let listen = listener.local_addr().context("listener address")?;
    let seams = Seams::production(data, config.tls.as_ref())
        .with_context(|| format!("node {id}: opening {}", data.display()))?;
    let node = Node::start(config, seams)
        .await
        .with_context(|| format!("node {id}: starting"))?;
    if let Some(addr) = metrics {
        serve_metrics(node.clone(), addr, stop.clone()).await?;
    }
    tokio::spawn(reload_users_on_hangup(node.clone()));
    tracing::info!(node = id, %listen, data = %data.display(), "serving");
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    // Nagle's algorithm would hold small responses and deliveries for up to
    // 40 ms waiting for delayed ACKs: every accepted socket gets TCP_NODELAY.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    node.serve(incoming, shutdown).await?;
    tracing::info!(node = id, "stopped");
    Ok(())
}

/// Serves `GET /metrics` on `addr` in the background until `stop`.
async fn serve_metrics(
    node: Node,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics address {addr}"))?;
    let history = Arc::new(History::default());
    let app = {
        let (node, history) = (node.clone(), history.clone());
        let metrics = node.clone();
        axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let node = metrics.clone();
                    async move { node.metrics() }
                }),
            )
            .route(
                "/status.json",
                axum::routing::get(move || {
                    let (node, history) = (node.clone(), history.clone());
                    async move {
                        let view = node.status_view(&history);
                        let json = serde_json::to_string(&view).unwrap_or_default();
                        ([(CONTENT_TYPE, "application/json")], json)
                    }
                }),
            )
            .route(
                "/",
                axum::routing::get(|| async {
                    (
                        [(CONTENT_TYPE, "text/html; charset=utf-8")],
                        status_page::PAGE,
                    )
                }),
            )
    };
    let mut sampling = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(status_page::SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => node.sample_into(&history),
                _ = sampling.wait_for(|stopped| *stopped) => return,
            }
        }
    });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    tracing::info!(%addr, "metrics at /metrics, status page at /");
    Ok(())
}

/// Node N+1 for a host name ending in `-N` (`$HOSTNAME`, else the kernel's).
fn id_from_hostname() -> anyhow::Result<u64> {
    let name = match std::env::var("HOSTNAME") {
        Ok(name) if !name.is_empty() => name,
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name")?
            .trim()
            .to_string(),
    };
    ordinal_id(&name).with_context(|| format!("host name {name:?} does not end in -ORDINAL"))
}

fn ordinal_id(name: &str) -> Option<u64> {
    let (_, ordinal) = name.rsplit_once('-')?;
    ordinal.parse::<u64>().ok()?.checked_add(1)
}

/// The node's own calls as a client (join, health, hand-off) show the
/// node's certificate: a node may do anything.
fn node_client_tls(tls: &Tls) -> raftmq_client::TlsOptions {
    let (cert, key, ca) = tls.pem();
    raftmq_client::TlsOptions {
        ca_pem: ca.to_vec(),
        identity: Some((cert.to_vec(), key.to_vec())),
        domain: None,
    }
}

/// A client of the one node at `addr`, answering within `timeout`.
async fn local_node(
    addr: &str,
    tls: &TlsArgs,
    timeout: Duration,
) -> anyhow::Result<BrokerClient<tonic::transport::Channel>> {
    let mut endpoint = match tls.load()? {
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
            .with_context(|| format!("bad address {addr:?}"))?
            .tls_config(tls.client())
            .context("TLS settings")?,
        None => Endpoint::from_shared(format!("http://{addr}"))
            .with_context(|| format!("bad address {addr:?}"))?,
    };
    endpoint = endpoint.connect_timeout(timeout);
    let channel = endpoint
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(BrokerClient::new(channel))
}

async fn hand_off(args: HandOffArgs) -> anyhow::Result<()> {
    let mut node = local_node(
        &args.addr,
        &args.tls,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    let status = node
        .cluster_status(ClusterStatusRequest {})
        .await
        .with_context(|| format!("asking {} for its status", args.addr))?
        .into_inner();
    if status.role != "leader" {
        println!(
            "node {} is a {}: nothing to hand off",
            status.node_id, status.role
        );
        return Ok(());
    }
    let moved = node
        .transfer_leader(TransferLeaderRequest { node_id: None })
        .await
        .with_context(|| format!("node {} did not hand leadership off", status.node_id))?
        .into_inner();
    println!(
        "node {} handed leadership to node {} in {} ms",
        status.node_id, moved.leader_id, moved.took_ms
    );
    Ok(())
}

async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let status = local_node(&args.addr, &args.tls, timeout)
        .await?
        .cluster_status(ClusterStatusRequest {})
        .await
        .with_context(|| format!("asking {} for its status", args.addr))?
        .into_inner();
    println!(
        "node {} is {} (leader: {})",
        status.node_id,
        status.role,
        status
            .leader_id
            .map_or("none".to_string(), |id| id.to_string())
    );
    if status.role == "shutdown" {
        bail!("node {}: its raft core has stopped", status.node_id);
    }
    let leaderless = Duration::from_millis(status.leaderless_ms);
    if leaderless > Duration::from_secs(args.leaderless_max_secs) {
        bail!(
            "node {}: no leader known for {:.1} s",
            status.node_id,
            leaderless.as_secs_f64()
        );
    }
    if args.ready {
        let voter = status
            .members
            .iter()
            .any(|m| m.node_id == status.node_id && m.voter);
        if !voter {
            bail!("node {}: not a voter yet", status.node_id);
        }
        let lag = status
            .commit_index
            .unwrap_or(0)
            .saturating_sub(status.applied_index.unwrap_or(0));
        if lag > READY_APPLY_LAG_MAX {
            bail!(
                "node {}: {lag} committed entries not applied yet",
                status.node_id
            );
        }
    }
    Ok(())
}

/// Reads the users file again on each SIGHUP.
async fn reload_users_on_hangup(node: Node) {
    let kind = tokio::signal::unix::SignalKind::hangup();
    let Ok(mut hangups) = tokio::signal::unix::signal(kind) else {
        tracing::warn!("SIGHUP handler not installed; the users file is read only at start");
        return;
    };
    while hangups.recv().await.is_some() {
        match node.reload_users() {
            Ok(Some(users)) => tracing::info!(users, "users file read again"),
            Ok(None) => {
                tracing::info!("SIGHUP: no users file to read (client authentication is off)")
            }
            Err(e) => {
                tracing::error!(error = %e, "users file not read again; the users in force stay")
            }
        }
    }
}

fn parse_node_hosts(text: &str) -> Result<(u64, Vec<String>), String> {
    let (id, hosts) = parse_peer(text)?;
    let hosts: Vec<String> = hosts.split('+').map(|h| h.trim().to_string()).collect();
    if hosts.iter().any(String::is_empty) {
        return Err(format!("an empty host in {text:?}"));
    }
    Ok((id, hosts))
}

fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let ca = Authority::new(&args.cluster_id)?;
    let write = |name: String, text: &str| -> anyhow::Result<()> {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
        Ok(())
    };
    write("ca.pem".to_string(), ca.cert_pem())?;
    for (id, hosts) in &args.nodes {
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let issued = ca.issue(&Subject::node(*id, &hosts))?;
        write(format!("node-{id}.pem"), &issued.cert)?;
        write(format!("node-{id}.key"), &issued.key)?;
    }
    for name in &args.users {
        let issued = ca.issue(&Subject::user(name))?;
        write(format!("user-{name}.pem"), &issued.cert)?;
        write(format!("user-{name}.key"), &issued.key)?;
    }
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    if args.name.is_empty() || args.name.contains([':', '/']) {
        bail!("a user name is not empty and has no ':' or '/'");
    }
    let secret: String = {
        use rand::Rng;
        rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect()
    };
    let token = format!("{}:{secret}", args.name);
    let hash = hash_secret(&secret);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"user": args.name, "token": token, "secret": hash})
        );
    } else {
        println!("token (give it to the client; it is shown only now):\n  {token}");
        println!(
            "users file entry:\n  [[user]]\n  name = \"{}\"\n  secret = \"{hash}\"",
            args.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ordinal_id;

    #[test]
    fn a_pods_ordinal_is_its_node_id_less_one() {
        assert_eq!(ordinal_id("raftmq-0"), Some(1));
        assert_eq!(ordinal_id("my-broker-12"), Some(13));
        assert_eq!(ordinal_id("raftmq"), None);
        assert_eq!(ordinal_id("raftmq-x"), None);
        assert_eq!(ordinal_id(&format!("raftmq-{}", u64::MAX)), None);
    }
}
