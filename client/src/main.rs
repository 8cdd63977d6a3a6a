//! `raftmq`: the command line for a raftmq cluster.
//!
//! Every command takes `--servers` (or `RAFTMQ_SERVERS`); writes find the
//! leader by themselves. Errors print one `error: ...` line and exit with 1;
//! usage errors exit with 2 (clap's convention).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftmq_client::{Client, ClientOptions};

mod cli {
    pub(crate) mod bench;
    pub(crate) mod cluster;
    pub(crate) mod consume;
    pub(crate) mod exchange;
    pub(crate) mod publish;
    pub(crate) mod request;
    pub(crate) mod security;
    pub(crate) mod stats;
    pub(crate) mod table;
    pub(crate) mod topic;
}

#[derive(Debug, Parser)]
#[command(name = "raftmq", version, about = "Command line for a raftmq cluster")]
struct Cli {
    /// Broker addresses (host:port), comma-separated; any subset of the
    /// cluster will do, the leader is found from there.
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    servers: Vec<String>,

    /// Seconds a command keeps looking for the leader (through elections and
    /// dead nodes) before it fails.
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_DEADLINE_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    deadline_secs: u64,

    #[command(flatten)]
    security: cli::security::Security,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the cluster.
    Cluster {
        #[command(subcommand)]
        command: cli::cluster::ClusterCommand,
    },
    /// Declare, delete and list topics and subscriptions.
    Topic {
        #[command(subcommand)]
        command: cli::topic::TopicCommand,
    },
    /// Declare, delete and list exchanges.
    Exchange {
        #[command(subcommand)]
        command: cli::exchange::ExchangeCommand,
    },
    /// Bind a topic to an exchange (by routing key, pattern or headers).
    Bind(cli::exchange::BindArgs),
    /// Remove a binding.
    Unbind(cli::exchange::BindArgs),
    /// Publish messages: generated ones with --count, else one per stdin line.
    Publish(Box<cli::publish::PublishArgs>),
    /// Send each stdin line as a request to a topic and print its reply.
    Request(cli::request::RequestArgs),
    /// Print and acknowledge messages from a subscription.
    Consume(cli::consume::ConsumeArgs),
    /// Depths, counts and rates of topics and subscriptions.
    Stats(cli::stats::StatsArgs),
    /// Measure throughput and latency; one JSON line per run.
    Bench(cli::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut options = ClientOptions {
        retry_deadline: Duration::from_secs(cli.deadline_secs),
        ..Default::default()
    };
    cli.security.apply(&mut options)?;
    if let Command::Bench(args) = cli.command {
        return cli::bench::run(cli.servers, options, args).await;
    }
    let client = Client::connect_with(cli.servers, options)?;
    match cli.command {
        Command::Cluster { command } => cli::cluster::run(&client, command).await,
        Command::Topic { command } => cli::topic::run(&client, command).await,
        Command::Exchange { command } => cli::exchange::run(&client, command).await,
        Command::Bind(args) => cli::exchange::bind(&client, args, true).await,
        Command::Unbind(args) => cli::exchange::bind(&client, args, false).await,
        Command::Publish(args) => cli::publish::run(&client, *args).await,
        Command::Request(args) => cli::request::run(&client, args).await,
        Command::Consume(args) => cli::consume::run(&client, args).await,
        Command::Stats(args) => cli::stats::run(&client, args).await,
        Command::Bench(_) => unreachable!("handled above"),
    }
}

/// Logs go to stderr so that stdout stays parseable; `RAFTMQ_LOG=debug`
/// shows the client's retries and redirects.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTMQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
