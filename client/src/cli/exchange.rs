//! `raftmq exchange ...`, `raftmq bind` and `raftmq unbind`.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use raftmq_client::{Binding, Client, Declared, ExchangeKind, ExchangeOptions};

use super::publish::parse_header;
use super::table;

#[derive(Debug, Subcommand)]
pub(crate) enum ExchangeCommand {
    /// Declare an exchange: create it, or succeed if it exists with the
    /// same type and alternate (a difference fails, naming it).
    Declare {
        /// Like a topic's name; "" is the default exchange, which exists
        /// already.
        name: String,
        #[arg(long = "type", value_enum)]
        kind: KindArg,
        /// Where messages this exchange routes nowhere go instead.
        #[arg(long)]
        alternate: Option<String>,
        /// Fail if the exchange exists, whatever its settings.
        #[arg(long)]
        fail_if_exists: bool,
    },
    /// Delete an exchange and its bindings; the topics stay.
    Delete {
        name: String,
        /// Only if it has no binding.
        #[arg(long)]
        if_unused: bool,
    },
    /// List exchanges with their bindings and unroutable counts.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// An exchange's type.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KindArg {
    /// The routing key equals the binding's.
    Direct,
    /// The routing key matches the binding's pattern (`*` one word, `#`
    /// zero or more).
    Topic,
    /// Every bound topic.
    Fanout,
    /// The headers match the binding's (`--match all|any`).
    Headers,
}

impl From<KindArg> for ExchangeKind {
    fn from(kind: KindArg) -> ExchangeKind {
        match kind {
            KindArg::Direct => ExchangeKind::Direct,
            KindArg::Topic => ExchangeKind::Topic,
            KindArg::Fanout => ExchangeKind::Fanout,
            KindArg::Headers => ExchangeKind::Headers,
        }
    }
}

/// `raftmq bind` and `raftmq unbind`.
#[derive(Debug, Args)]
pub(crate) struct BindArgs {
    exchange: String,
    topic: String,
    /// The routing key (direct) or pattern (topic).
    #[arg(long, default_value = "")]
    routing_key: String,
    /// For a headers exchange: a header to match, NAME=VALUE; repeat for
    /// more.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// For a headers exchange: all, any, all-with-x or any-with-x
    /// (x-match).
    #[arg(long = "match")]
    x_match: Option<String>,
}

impl BindArgs {
    fn binding(&self) -> Binding {
        let mut binding = Binding::key(&self.topic, &self.routing_key);
        binding.arguments.extend(self.headers.iter().cloned());
        if let Some(how) = &self.x_match {
            binding.arguments.insert("x-match".into(), how.clone());
        }
        binding
    }
}

pub(crate) async fn bind(client: &Client, args: BindArgs, bind: bool) -> anyhow::Result<ExitCode> {
    let binding = args.binding();
    if bind {
        client.bind(&args.exchange, &binding).await?;
        println!("bound topic {} to exchange {}", args.topic, args.exchange);
    } else {
        client.unbind(&args.exchange, &binding).await?;
        println!(
            "unbound topic {} from exchange {}",
            args.topic, args.exchange
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run(client: &Client, command: ExchangeCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExchangeCommand::Declare {
            name,
            kind,
            alternate,
            fail_if_exists,
        } => {
            let options = ExchangeOptions {
                alternate,
                fail_if_exists,
            };
            match client.declare_exchange(&name, kind.into(), options).await? {
                Declared::Created => println!("created exchange {name}"),
                Declared::Existed => println!("exchange {name} exists with these settings"),
            }
        }
        ExchangeCommand::Delete { name, if_unused } => {
            client.delete_exchange(&name, if_unused).await?;
            println!("deleted exchange {name}");
        }
        ExchangeCommand::List { json } => {
            let exchanges = client.list_exchanges().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&exchanges)?);
            } else {
                let rows: Vec<Vec<String>> = exchanges
                    .iter()
                    .map(|exchange| {
                        let bindings: Vec<String> = exchange
                            .bindings
                            .iter()
                            .map(|b| match b.arguments.is_empty() {
                                true => format!("{}<-{:?}", b.topic, b.routing_key),
                                false => format!("{}<-{:?}", b.topic, b.arguments),
                            })
                            .collect();
                        vec![
                            exchange.name.clone(),
                            format!("{:?}", exchange.kind).to_lowercase(),
                            exchange.alternate.clone().unwrap_or_default(),
                            exchange.unroutable.to_string(),
                            bindings.join(" "),
                        ]
                    })
                    .collect();
                table::print(
                    &["NAME", "TYPE", "ALTERNATE", "UNROUTABLE", "BINDINGS"],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
