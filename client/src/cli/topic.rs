//! `raftmq topic ...`

use std::process::ExitCode;

use clap::Subcommand;
use raftmq_client::{Client, TopicOptions};

use super::table;

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic with a fixed number of partitions.
    Create {
        /// 1 to 255 characters of [A-Za-z0-9._-].
        name: String,
        /// Partitions; messages with the same key share one and keep order.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
        /// Refuse publishes while this many messages are retained (0: no
        /// limit).
        #[arg(long, default_value_t = 0)]
        max_messages: u64,
        /// Refuse publishes while this many payload bytes are retained (0:
        /// no limit).
        #[arg(long, default_value_t = 0)]
        max_bytes: u64,
    },
    /// List topics with partitions, retained messages and subscriptions.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: TopicCommand) -> anyhow::Result<ExitCode> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            max_messages,
            max_bytes,
        } => {
            let limits = TopicOptions {
                max_messages,
                max_bytes,
            };
            client.create_topic_with(&name, partitions, limits).await?;
            println!("created topic {name} with {partitions} partitions");
        }
        TopicCommand::List { json } => {
            let topics = client.list_topics().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&topics)?);
            } else {
                let rows: Vec<Vec<String>> = topics
                    .iter()
                    .map(|topic| {
                        vec![
                            topic.name.clone(),
                            topic.partitions.to_string(),
                            topic.retained.to_string(),
                            topic.subscriptions.join(","),
                        ]
                    })
                    .collect();
                table::print(&["NAME", "PARTITIONS", "RETAINED", "SUBSCRIPTIONS"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
