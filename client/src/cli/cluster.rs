//! `raftmq cluster ...`

use std::process::ExitCode;

use clap::Subcommand;
use raftmq_client::{Client, Member, NodeStatus};
use serde_json::json;

use super::table;

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Ask every server for its view: role, leader, term, log indexes.
    /// Fails only if no server answers.
    Status {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask every server to take a snapshot now and wait until each is
    /// written (up to a minute); the log behind it can then go. Fails if
    /// any server did not take one.
    Snapshot {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Hand leadership to node ID (default: the most caught-up voter)
    /// without an election timeout; prints the new leader.
    TransferLeader {
        /// The voter to lead next.
        id: Option<u64>,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add node ID, reachable at ADDR (HOST:PORT), to the cluster: a
    /// learner first, a voter once it has caught up. Start the node with
    /// `raftmq-node run --join` first. Prints the members.
    AddNode {
        id: u64,
        /// Where the other nodes reach it (HOST:PORT).
        addr: String,
        /// Where clients reach it, if not at ADDR (HOST:PORT).
        #[arg(long)]
        client_addr: Option<String>,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove node ID from the cluster; removing the leader hands
    /// leadership over first. Prints the members.
    RemoveNode {
        id: u64,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Status { json } => status(client, json).await,
        ClusterCommand::Snapshot { json } => snapshot(client, json).await,
        ClusterCommand::TransferLeader { id, json } => {
            let moved = client.transfer_leader(id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&moved)?);
            } else {
                table::print(
                    &["LEADER", "TOOK MS"],
                    &[vec![moved.leader_id.to_string(), moved.took_ms.to_string()]],
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::AddNode {
            id,
            addr,
            client_addr,
            json,
        } => print_members(
            &client.add_node(id, &addr, client_addr.as_deref()).await?,
            json,
        ),
        ClusterCommand::RemoveNode { id, json } => {
            print_members(&client.remove_node(id).await?, json)
        }
    }
}

fn print_members(members: &[Member], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "members": members }))?
        );
    } else {
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|m| {
                vec![
                    m.node_id.to_string(),
                    m.address.clone(),
                    m.peer_address.clone(),
                    if m.voter { "voter" } else { "learner" }.to_string(),
                    table::or_dash(m.matched_index),
                ]
            })
            .collect();
        table::print(
            &["NODE", "ADDRESS", "PEER ADDRESS", "ROLE", "MATCHED"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn snapshot(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let asks = client
        .seeds()
        .iter()
        .map(|address| async move { (address.clone(), client.take_snapshot(address).await) });
    let taken = futures::future::join_all(asks).await;
    if json {
        let nodes: Vec<serde_json::Value> = taken
            .iter()
            .map(|(address, taken)| match taken {
                Ok(taken) => json!({ "address": address, "snapshot": taken }),
                Err(error) => json!({ "address": address, "error": error.to_string() }),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "nodes": nodes }))?
        );
    } else {
        let rows: Vec<Vec<String>> = taken
            .iter()
            .map(|(address, taken)| match taken {
                Ok(taken) => vec![
                    address.clone(),
                    taken.snapshot_index.to_string(),
                    taken.took_ms.to_string(),
                    String::new(),
                ],
                Err(error) => vec![address.clone(), "-".into(), "-".into(), error.to_string()],
            })
            .collect();
        table::print(&["ADDRESS", "SNAPSHOT INDEX", "TOOK MS", "ERROR"], &rows);
    }
    if let Some((address, Err(error))) = taken.iter().find(|(_, taken)| taken.is_err()) {
        anyhow::bail!("{address} took no snapshot: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let nodes = client.cluster_status_all().await;
    if json {
        print_json(&nodes)?;
    } else {
        print_table(&nodes);
    }
    if nodes.iter().all(|node| node.status.is_err()) {
        anyhow::bail!("no server answered");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(nodes: &[NodeStatus]) {
    let headers = [
        "NODE", "ADDRESS", "ROLE", "LEADER", "TERM", "VOTERS", "COMMIT", "APPLIED", "LAST LOG",
        "SNAPSHOT", "ERROR",
    ];
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|node| match &node.status {
            Ok(status) => vec![
                status.node_id.to_string(),
                node.address.clone(),
                status.role.clone(),
                table::or_dash(status.leader_id),
                status.term.to_string(),
                status
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .count()
                    .to_string(),
                table::or_dash(status.commit_index),
                table::or_dash(status.applied_index),
                table::or_dash(status.last_log_index),
                table::or_dash(status.snapshot_index),
                String::new(),
            ],
            Err(error) => vec![
                dash(),
                node.address.clone(),
                "unreachable".to_string(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                error.to_string(),
            ],
        })
        .collect();
    table::print(&headers, &rows);
}

fn print_json(nodes: &[NodeStatus]) -> anyhow::Result<()> {
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|node| match &node.status {
            Ok(status) => json!({ "address": node.address, "status": status }),
            Err(error) => json!({
                "address": node.address,
                "error": {
                    "code": error.code().map(|code| format!("{code:?}")),
                    "message": error.to_string(),
                },
            }),
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "nodes": nodes }))?
    );
    Ok(())
}
