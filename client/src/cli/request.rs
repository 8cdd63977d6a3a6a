//! `raftmq request`: one request per stdin line, each reply printed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use raftmq_client::{Client, Message};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The topic the serving side consumes.
    topic: String,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_secs: u64,
    /// Print each reply as a JSON line (payload, headers, properties).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(client: &Client, args: RequestArgs) -> anyhow::Result<ExitCode> {
    let requester = client.requester().await?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = requester
            .request(&args.topic, Message::new(line), timeout)
            .await?;
        let payload = String::from_utf8_lossy(&reply.payload);
        if args.json {
            let properties = reply.properties.as_deref();
            let line = json!({
                "payload": payload,
                "headers": reply.headers,
                "correlation_id": properties.and_then(|p| p.correlation_id.as_deref()),
            });
            println!("{line}");
        } else {
            println!("{payload}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
