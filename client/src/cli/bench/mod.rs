//! `raftmq bench`: throughput and latency of a cluster, one JSON line per
//! run, plus the disk's own limits measured in the same run for scale.
//!
//! With `--local` it starts a three-node `raftmq-node dev` cluster of its own
//! (the binary next to this one) on fresh data, so that it can also read the
//! bytes the nodes wrote to disk (`/proc/PID/io`).

mod acker;
mod backlog;
mod compose;
mod disk;
mod e2e;
mod failover;
mod fanin;
mod local;
mod publish;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use raftmq_client::{Client, ClientOptions};

use local::LocalCluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Run {
    /// Confirmed publish throughput and confirm latency.
    Publish,
    /// Publish-to-delivery latency at a fixed rate, consumer acking.
    E2e,
    /// Four producers and four consumers on four topics.
    Fanin,
    /// The disk's own limits: small synced appends and big synced writes.
    Disk,
    /// All of the above, in that order.
    All,
    /// A deep backlog (--backlog messages, no consumer), one node wiped and
    /// rejoined by snapshot, every node killed and started again, then
    /// drained: each node's memory, data directory and snapshot when full,
    /// the rejoin's time and peak memory, the restart's time to a leader
    /// and to the first delivery, the drain rate, and the same figures
    /// once all is acked. Not part of `all`: at its default it fills 1 GB
    /// per node.
    Backlog,
    /// Client-seen unavailability over --kills leader crashes (SIGKILL,
    /// then the node starts again): per kill, the time to the first confirm
    /// and to the first delivery of a message sent after it (p50, p99,
    /// max). Needs --local or --compose; not part of `all`.
    Failover,
}

/// Confirms waiting to be counted or timed; `send` itself is bounded by
/// the producer's window.
const CONFIRMS_QUEUED_MAX: usize = 100_000;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    run: Run,
    /// Start a local three-node cluster on fresh data (needs `raftmq-node`
    /// next to this binary) instead of using --servers.
    #[arg(long)]
    local: bool,
    /// The failover run crashes the compose cluster of this file (services
    /// node1..node3, up, reached at --servers) with `docker kill`.
    #[arg(long, conflicts_with = "local")]
    compose: Option<std::path::PathBuf>,
    /// Port of the local cluster's node 1 (nodes use three ports from it).
    #[arg(long, default_value_t = 7301)]
    local_base_port: u16,
    /// Messages in the publish run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Publish requests in flight per producer.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Messages per second in the e2e run.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seconds of the e2e run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages in the backlog run.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Leader kills in the failover run.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Messages per producer in the fan-in run.
    #[arg(long, default_value_t = 50_000)]
    fanin_messages: u64,
    /// Directory for the disk run [default: the local cluster's data, else
    /// the current directory].
    #[arg(long)]
    disk_dir: Option<std::path::PathBuf>,
}

pub(crate) async fn run(
    servers: Vec<String>,
    options: ClientOptions,
    args: BenchArgs,
) -> anyhow::Result<ExitCode> {
    let mut local = if args.local {
        Some(LocalCluster::start(args.local_base_port).await?)
    } else {
        None
    };
    let servers = local.as_ref().map_or(servers, |l| l.servers());
    let client = Client::connect_with(servers, options)?;
    let runs = match args.run {
        Run::All => vec![Run::Disk, Run::Publish, Run::E2e, Run::Fanin],
        one => vec![one],
    };
    for (index, run) in runs.into_iter().enumerate() {
        let tag = format!("bench{}-{index}", std::process::id());
        let line = match run {
            Run::Publish => publish::run(&client, &tag, &args, local.as_ref()).await?,
            Run::E2e => e2e::run(&client, &tag, &args).await?,
            Run::Fanin => fanin::run(&client, &tag, &args).await?,
            Run::Backlog => backlog::run(&client, &tag, &args, local.as_mut()).await?,
            Run::Failover => {
                let target = match (local.as_mut(), &args.compose) {
                    (Some(local), _) => failover::Target::Local(local),
                    (None, Some(file)) => failover::Target::Compose(compose::ComposeCluster::new(
                        file.clone(),
                        client.seeds().to_vec(),
                    )?),
                    (None, None) => {
                        anyhow::bail!(
                            "the failover bench kills nodes: run it with --local or --compose FILE"
                        )
                    }
                };
                failover::run(&client, &tag, &args, target).await?
            }
            Run::Disk => {
                let dir = args
                    .disk_dir
                    .clone()
                    .or_else(|| local.as_ref().map(|l| l.data_dir().to_path_buf()))
                    .unwrap_or_else(|| ".".into());
                disk::run(&dir)?
            }
            Run::All => unreachable!("expanded above"),
        };
        println!("{line}");
        // Let the cluster settle (snapshots, compaction) between runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(local) = local {
        local.stop().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress on stderr, so stdout keeps only the JSON lines.
fn progress(text: impl std::fmt::Display) {
    eprintln!("bench: {text}");
}
