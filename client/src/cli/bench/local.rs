//! A local three-node cluster for the bench: three `raftmq-node run`
//! processes (as in production, so each node's memory can be read apart) on
//! fresh data in a temporary directory, stopped with SIGTERM at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raftmq_client::Client;
use serde_json::{json, Value};

const NODES: u16 = 3;
const STARTUP: Duration = Duration::from_secs(30);
/// A restart re-applies the log since the last snapshot: allow for a long
/// one.
const RESTART: Duration = Duration::from_secs(300);
/// The node's snapshot file in its data directory.
const SNAPSHOT_FILE: &str = "raft-snapshot";
const MIB: f64 = 1024.0 * 1024.0;

pub(crate) struct LocalCluster {
    /// The `raftmq-node` binary.
    node: PathBuf,
    /// Node `i + 1`'s process.
    children: Vec<Child>,
    dir: PathBuf,
    base_port: u16,
}

impl LocalCluster {
    pub(crate) async fn start(base_port: u16) -> anyhow::Result<LocalCluster> {
        let exe = std::env::current_exe()?;
        let node = exe.with_file_name("raftmq-node");
        if !node.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p raftmq-node)",
                node.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("raftmq-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = LocalCluster {
            node,
            children: Vec::new(),
            dir,
            base_port,
        };
        cluster.spawn()?;
        cluster.wait_for_leader(STARTUP).await?;
        super::progress(format!("local cluster up: {}", cluster.servers().join(",")));
        Ok(cluster)
    }

    /// Starts the three processes on the data directories as they are.
    fn spawn(&mut self) -> anyhow::Result<()> {
        for id in 1..=NODES {
            let child = self.spawn_node(id)?;
            self.children.push(child);
        }
        Ok(())
    }

    /// Starts node `id` on its data directory as it is.
    fn spawn_node(&self, id: u16) -> anyhow::Result<Child> {
        let peers: Vec<String> = self
            .servers()
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{id}.log")))?;
        Command::new(&self.node)
            .args(["run", "--id", &id.to_string(), "--peers", &peers.join(",")])
            .arg("--data")
            .arg(self.node_dir(id))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.node.display()))
    }

    /// Kills node `id`, wipes its data directory and starts it again, so
    /// that it rejoins by snapshot; answers how long it took to apply what
    /// the leader had committed, and its peak resident memory meanwhile
    /// (MiB).
    pub(crate) async fn wipe_and_rejoin(&mut self, id: u16) -> anyhow::Result<(Duration, f64)> {
        let index = usize::from(id - 1);
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
        std::fs::remove_dir_all(self.node_dir(id))?;
        let client = Client::connect(self.servers())?;
        let started = Instant::now();
        self.children[index] = self.spawn_node(id)?;
        let addr = &self.servers()[index];
        let mut target = None;
        while started.elapsed() < RESTART {
            let statuses = client.cluster_status_all().await;
            if target.is_none() {
                target = statuses
                    .iter()
                    .filter_map(|s| s.status.as_ref().ok())
                    .find(|s| s.role == "leader")
                    .and_then(|s| s.commit_index);
            }
            let caught_up = statuses.iter().any(|s| {
                s.address == *addr
                    && s.status.as_ref().is_ok_and(|s| {
                        target.is_some() && s.applied_index >= target && s.role == "follower"
                    })
            });
            if caught_up {
                let status = read_proc(&self.children[index], "status")?;
                let peak_kib = proc_field(&status, "VmHWM:").context("no VmHWM in status")?;
                return Ok((started.elapsed(), mib(peak_kib * 1024)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "node {id} did not catch up within {RESTART:?}; see its log in {}",
            self.dir.display()
        )
    }

    /// Kills every node at once (SIGKILL: nothing is flushed on the way
    /// out), starts them again on their data, and answers how long they
    /// took to agree on a leader.
    pub(crate) async fn kill_and_restart(&mut self) -> anyhow::Result<Duration> {
        self.kill_all();
        let started = Instant::now();
        self.spawn()?;
        self.wait_for_leader(RESTART).await?;
        Ok(started.elapsed())
    }

    /// The node every node names as leader.
    pub(crate) async fn leader(&self) -> anyhow::Result<u16> {
        self.wait_for_leader(STARTUP).await?;
        leader_of(self.servers()).await
    }

    /// SIGKILLs node `id`.
    pub(crate) fn kill(&mut self, id: u16) {
        let child = &mut self.children[usize::from(id - 1)];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts node `id` again on its data.
    pub(crate) fn restart(&mut self, id: u16) -> anyhow::Result<()> {
        self.children[usize::from(id - 1)] = self.spawn_node(id)?;
        Ok(())
    }

    pub(crate) fn servers(&self) -> Vec<String> {
        (0..NODES)
            .map(|i| format!("127.0.0.1:{}", self.base_port + i))
            .collect()
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn node_dir(&self, id: u16) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// Bytes the nodes have sent to storage so far: `write_bytes` minus
    /// `cancelled_write_bytes` (the dirty page cache that was truncated
    /// away, deleted or rewritten files, before it ever reached the disk),
    /// summed over the three processes.
    pub(crate) fn written_bytes(&self) -> anyhow::Result<u64> {
        let mut written = 0;
        for child in &self.children {
            let io = read_proc(child, "io")?;
            let field = |name| proc_field(&io, name).with_context(|| format!("no {name} in io"));
            written += field("write_bytes:")?.saturating_sub(field("cancelled_write_bytes:")?);
        }
        Ok(written)
    }

    pub(crate) fn nodes(&self) -> u64 {
        u64::from(NODES)
    }

    /// What each node holds now: resident memory, its data directory and
    /// its snapshot file, in MiB; one JSON object per node.
    pub(crate) fn usage(&self) -> anyhow::Result<Value> {
        let mut nodes = Vec::new();
        for (id, child) in (1..=NODES).zip(&self.children) {
            let status = read_proc(child, "status")?;
            let rss_kib = proc_field(&status, "VmRSS:").context("no VmRSS in status")?;
            let dir = self.node_dir(id);
            let snapshot = std::fs::metadata(dir.join(SNAPSHOT_FILE)).map_or(0, |m| m.len());
            nodes.push(json!({
                "node": id,
                "rss_mib": mib(rss_kib * 1024),
                "data_mib": mib(dir_bytes(&dir)?),
                "snapshot_mib": mib(snapshot),
            }));
        }
        Ok(Value::Array(nodes))
    }

    /// The CPU time (user and system) each node's process has used.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
            .context("no clock ticks per second")? as f64;
        self.children
            .iter()
            .map(|child| {
                let stat = read_proc(child, "stat")?;
                // Fields 14 and 15 (utime, stime), counted after the
                // parenthesised name, which may hold spaces.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .context("no name in stat")?
                    .1
                    .split_whitespace()
                    .collect();
                let tick = |field: usize| -> anyhow::Result<f64> {
                    Ok(fields
                        .get(field - 3)
                        .context("short stat")?
                        .parse::<f64>()?)
                };
                Ok((tick(14)? + tick(15)?) / ticks)
            })
            .collect()
    }

    pub(crate) async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<()> {
        if every_node_knows_a_leader(self.servers(), within).await? {
            return Ok(());
        }
        bail!(
            "local cluster had no leader after {within:?}; see the node logs in {}",
            self.dir.display()
        )
    }

    pub(crate) async fn stop(mut self) {
        // SIGTERM lets the nodes stop cleanly; the directory goes after.
        for child in &self.children {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .children
                .iter_mut()
                .all(|child| matches!(child.try_wait(), Ok(Some(_))))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// SIGKILL to every node still running.
    fn kill_all(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bench that failed half way leaves no node running behind it (`stop`
/// is the clean way out; this is the other).
impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The node that says it leads, asking each of `servers`.
pub(crate) async fn leader_of(servers: Vec<String>) -> anyhow::Result<u16> {
    let client = Client::connect(servers)?;
    let statuses = client.cluster_status_all().await;
    statuses
        .iter()
        .filter_map(|s| s.status.as_ref().ok())
        .find(|s| s.role == "leader")
        .map(|s| s.node_id as u16)
        .context("no node says it leads")
}

/// Whether, within `within`, every one of `servers` answers naming a leader.
pub(crate) async fn every_node_knows_a_leader(
    servers: Vec<String>,
    within: Duration,
) -> anyhow::Result<bool> {
    let client = Client::connect(servers)?;
    let started = Instant::now();
    while started.elapsed() < within {
        let statuses = client.cluster_status_all().await;
        if statuses
            .iter()
            .all(|s| s.status.as_ref().is_ok_and(|s| s.leader_id.is_some()))
        {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(false)
}

fn read_proc(child: &Child, file: &str) -> anyhow::Result<String> {
    let path = format!("/proc/{}/{file}", child.id());
    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
}

/// The number after `name` in a /proc file (`VmRSS:   1234 kB`,
/// `write_bytes: 5678`).
fn proc_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / MIB * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_by_name() {
        let status = "Name:\traftmq-node\nVmHWM:\t  9000 kB\nVmRSS:\t  1234 kB\n";
        assert_eq!(proc_field(status, "VmRSS:"), Some(1234));
        let io = "rchar: 1\nwrite_bytes: 5678\ncancelled_write_bytes: 12\n";
        assert_eq!(proc_field(io, "write_bytes:"), Some(5678));
        assert_eq!(proc_field(io, "cancelled_write_bytes:"), Some(12));
        assert_eq!(proc_field(io, "read_bytes:"), None);
        assert_eq!(proc_field("VmRSS: lots", "VmRSS:"), None);
    }
}
