//! The `raftmq-node` binary: run one node, or a local development cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use raftmq_node::{Node, NodeConfig, Seams};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Parser)]
#[command(name = "raftmq-node", version, about = "raftmq broker node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node of a cluster.
    Run(RunArgs),
    /// Runs a local cluster of several nodes in this process, on loopback.
    Dev(DevArgs),
}

#[derive(Parser)]
struct RunArgs {
    /// This node's id; it must appear in --peers.
    #[arg(long, env = "RAFTMQ_NODE_ID")]
    id: u64,
    /// Every initial voter as ID=HOST:PORT, comma separated, this node
    /// included. The address is where peers and clients reach that node.
    #[arg(long, env = "RAFTMQ_PEERS", value_delimiter = ',', value_parser = parse_peer, required = true)]
    peers: Vec<(u64, String)>,
    /// Socket address to listen on [default: this node's peer address].
    #[arg(long, env = "RAFTMQ_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for this node's log, vote and snapshots.
    #[arg(long, env = "RAFTMQ_DATA", default_value = "./data/node")]
    data: PathBuf,
    /// Largest message accepted (payload + key + headers), in bytes.
    #[arg(long, env = "RAFTMQ_MESSAGE_BYTES_MAX", default_value_t = 1024 * 1024)]
    message_bytes_max: usize,
    /// Log entries between snapshots; the log behind a snapshot is purged.
    #[arg(long, env = "RAFTMQ_SNAPSHOT_EVERY", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,
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
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=error,sled=warn".into()),
        )
        .init();
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        }
    });
    match Cli::parse().command {
        Command::Run(args) => run(args, stop).await,
        Command::Dev(args) => dev(args, stop).await,
    }
}

async fn run(args: RunArgs, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let peers: BTreeMap<u64, String> = args.peers.into_iter().collect();
    let Some(own) = peers.get(&args.id) else {
        bail!("node {} is not in --peers", args.id);
    };
    let listen = match args.listen {
        Some(listen) => listen,
        None => own
            .parse()
            .with_context(|| format!("--listen is needed: {own:?} is not an IP:PORT"))?,
    };
    let mut config = NodeConfig::new(args.id, peers);
    config.limits.message_bytes_max = args.message_bytes_max;
    config.snapshot_every = args.snapshot_every;
    serve(config, &args.data, listen, stop).await
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
    let mut nodes = tokio::task::JoinSet::new();
    for (id, addr) in &peers {
        let config = NodeConfig::new(*id, peers.clone());
        let data = args.data.join(format!("node{id}"));
        let listen: SocketAddr = addr
            .parse()
            .with_context(|| format!("bad address {addr:?}"))?;
        let stop = stop.clone();
        nodes.spawn(async move { serve(config, &data, listen, stop).await });
    }
    while let Some(result) = nodes.join_next().await {
        result??;
    }
    Ok(())
}

/// Binds `listen`, starts the node on sled in `data`, and serves it until
/// `stop` turns true.
async fn serve(
    config: NodeConfig,
    data: &Path,
    listen: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let id = config.id;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("node {id}: binding {listen}"))?;
    let seams = Seams::production(data)
        .with_context(|| format!("node {id}: opening {}", data.display()))?;
    let node = Node::start(config, seams)
        .await
        .with_context(|| format!("node {id}: starting"))?;
    tracing::info!(node = id, %listen, data = %data.display(), "serving");
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    node.serve(TcpListenerStream::new(listener), shutdown)
        .await?;
    tracing::info!(node = id, "stopped");
    Ok(())
}
