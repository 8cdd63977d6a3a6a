//! `raftmq topic ...`

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use raftmq_client::{Client, Declared, DeleteOptions, Overflow, TopicOptions};

use super::table;

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Declare a topic with a fixed number of partitions: create it, or
    /// succeed if it exists with the same settings (other settings fail,
    /// naming the first that differs).
    #[command(visible_alias = "create")]
    Declare {
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
        /// Every message expires this many ms after it is published (0:
        /// never; at most 4294967295, 49 days): never delivered after, and
        /// dead-lettered with reason "expired" where the subscription has
        /// a dead-letter topic.
        #[arg(long, default_value_t = 0)]
        message_ttl_ms: u32,
        /// A stream: keep messages whether or not acked, for replay
        /// (consume --from-offset / --from-time-ms), until --max-age-ms or
        /// the limits drop the oldest.
        #[arg(long)]
        stream: bool,
        /// A stream's age limit in ms (0: none).
        #[arg(long, default_value_t = 0, requires = "stream")]
        max_age_ms: u64,
        /// The highest message priority, 0 (none) to 10: higher goes first.
        #[arg(long, default_value_t = 0)]
        max_priority: u32,
        /// What a publish past --max-messages / --max-bytes does.
        #[arg(long, value_enum, default_value = "reject-publish")]
        overflow: OverflowArg,
        /// Delete the topic once it has had no consumer for this many ms
        /// (RabbitMQ's x-expires; 0: never).
        #[arg(long, default_value_t = 0)]
        expires_ms: u32,
        /// Fail if the topic exists, whatever its settings.
        #[arg(long)]
        fail_if_exists: bool,
    },
    /// Delete a topic with its subscriptions and retained messages; its
    /// consumers' streams end.
    Delete {
        name: String,
        /// Only if no consumer is attached.
        #[arg(long)]
        if_unused: bool,
        /// Only if it retains no message.
        #[arg(long)]
        if_empty: bool,
    },
    /// Delete a subscription: its consumers' streams end, and messages
    /// only it had not acked are dropped.
    DeleteSubscription { topic: String, subscription: String },
    /// List topics with partitions, retained messages and subscriptions.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// What a publish past a topic's limits does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum OverflowArg {
    /// Refused: the publisher is told to wait (RESOURCE_EXHAUSTED).
    RejectPublish,
    /// Stored; the oldest messages go to the dead-letter topics with
    /// reason maxlen.
    DropHead,
}

pub(crate) async fn run(client: &Client, command: TopicCommand) -> anyhow::Result<ExitCode> {
    match command {
        TopicCommand::Declare {
            name,
            partitions,
            max_messages,
            max_bytes,
            message_ttl_ms,
            overflow,
            max_priority,
            stream,
            max_age_ms,
            expires_ms,
            fail_if_exists,
        } => {
            let options = TopicOptions {
                max_messages,
                max_bytes,
                message_ttl_ms,
                fail_if_exists,
                expires: (expires_ms > 0).then(|| Duration::from_millis(expires_ms.into())),
                max_priority,
                stream,
                max_age: (max_age_ms > 0).then(|| Duration::from_millis(max_age_ms)),
                overflow: match overflow {
                    OverflowArg::RejectPublish => Overflow::RejectPublish,
                    OverflowArg::DropHead => Overflow::DropHead,
                },
                ..TopicOptions::default()
            };
            match client.create_topic_with(&name, partitions, options).await? {
                Declared::Created => println!("created topic {name} with {partitions} partitions"),
                Declared::Existed => println!("topic {name} exists with these settings"),
            }
        }
        TopicCommand::Delete {
            name,
            if_unused,
            if_empty,
        } => {
            let options = DeleteOptions {
                if_unused,
                if_empty,
            };
            let messages = client.delete_topic(&name, options).await?;
            println!("deleted topic {name} and the {messages} messages it retained");
        }
        TopicCommand::DeleteSubscription {
            topic,
            subscription,
        } => {
            client.delete_subscription(&topic, &subscription).await?;
            println!("deleted subscription {subscription} of topic {topic}");
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
