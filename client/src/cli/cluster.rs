//! `raftmq cluster ...`

use std::process::ExitCode;

use clap::Subcommand;
use raftmq_client::{Client, NodeStatus};
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
}

pub(crate) async fn run(client: &Client, command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Status { json } = command;
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
