//! The compose cluster (deploy/docker-compose.yml) as the failover bench
//! crashes it: `docker kill -s KILL` of the leader's container, then
//! `docker start` (a killed container stays down: the restart policy skips
//! a manual stop).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use super::local::{every_node_knows_a_leader, leader_of};

/// How long the cluster may take to agree on a leader again.
const RECOVERY: Duration = Duration::from_secs(60);

pub(crate) struct ComposeCluster {
    file: PathBuf,
    servers: Vec<String>,
}

impl ComposeCluster {
    /// The cluster `file` describes (services `node1`..), reached at
    /// `servers`.
    pub(crate) fn new(file: PathBuf, servers: Vec<String>) -> anyhow::Result<ComposeCluster> {
        if !file.is_file() {
            bail!("no compose file at {}", file.display());
        }
        Ok(ComposeCluster { file, servers })
    }

    pub(crate) async fn leader(&self) -> anyhow::Result<u16> {
        self.wait_for_leader(RECOVERY).await?;
        leader_of(self.servers.clone()).await
    }

    /// Looks the container up first, so that the kill itself is one
    /// quick `docker kill`.
    pub(crate) fn kill(&mut self, id: u16) -> anyhow::Result<()> {
        let container = self.container(id)?;
        docker(&["kill", "-s", "KILL", &container])
    }

    pub(crate) fn restart(&mut self, id: u16) -> anyhow::Result<()> {
        let container = self.container(id)?;
        docker(&["start", &container])
    }

    pub(crate) async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<()> {
        if every_node_knows_a_leader(self.servers.clone(), within).await? {
            return Ok(());
        }
        bail!("the compose cluster had no leader after {within:?}")
    }

    /// The container of service `node{id}`: `docker compose` (v2) when
    /// present, else `docker-compose` (v1).
    fn container(&self, id: u16) -> anyhow::Result<String> {
        let file = self.file.to_string_lossy().to_string();
        let service = format!("node{id}");
        let v2 = Command::new("docker")
            .args(["compose", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let mut command = match v2 {
            true => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            false => Command::new("docker-compose"),
        };
        let output = command
            .args(["-f", &file, "ps", "-q", &service])
            .stdin(Stdio::null())
            .output()
            .context("running docker compose ps")?;
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || id.is_empty() {
            bail!("no container for {service} in {file}: is the cluster up?");
        }
        Ok(id)
    }
}

fn docker(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !status.success() {
        bail!("docker {} failed ({status})", args.join(" "));
    }
    Ok(())
}
