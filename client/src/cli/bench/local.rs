//! A local three-node cluster for the bench: `raftmq-node dev` on fresh
//! data in a temporary directory, stopped with SIGTERM at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raftmq_client::Client;

const NODES: u16 = 3;
const STARTUP: Duration = Duration::from_secs(30);

pub(crate) struct LocalCluster {
    child: Child,
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
        let log = std::fs::File::create(dir.join("nodes.log"))?;
        let child = Command::new(&node)
            .args([
                "dev",
                "--nodes",
                &NODES.to_string(),
                "--base-port",
                &base_port.to_string(),
                "--data",
            ])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", node.display()))?;
        let cluster = LocalCluster {
            child,
            dir,
            base_port,
        };
        cluster.wait_for_leader().await?;
        super::progress(format!("local cluster up: {}", cluster.servers().join(",")));
        Ok(cluster)
    }

    pub(crate) fn servers(&self) -> Vec<String> {
        (0..NODES)
            .map(|i| format!("127.0.0.1:{}", self.base_port + i))
            .collect()
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the cluster's process has sent to storage so far (all three
    /// nodes share the process): `write_bytes` minus `cancelled_write_bytes`,
    /// the dirty page cache that was truncated away (deleted or rewritten
    /// files) before it ever reached the disk.
    pub(crate) fn written_bytes(&self) -> anyhow::Result<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))
            .context("reading /proc/PID/io")?;
        let field = |name: &str| {
            io.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .with_context(|| format!("no {name} in /proc/PID/io"))
        };
        Ok(field("write_bytes: ")?.saturating_sub(field("cancelled_write_bytes: ")?))
    }

    pub(crate) fn nodes(&self) -> u64 {
        u64::from(NODES)
    }

    async fn wait_for_leader(&self) -> anyhow::Result<()> {
        let client = Client::connect(self.servers())?;
        let started = Instant::now();
        while started.elapsed() < STARTUP {
            let statuses = client.cluster_status_all().await;
            if statuses
                .iter()
                .all(|s| s.status.as_ref().is_ok_and(|s| s.leader_id.is_some()))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "local cluster had no leader after {STARTUP:?}; see {}",
            self.dir.join("nodes.log").display()
        )
    }

    pub(crate) async fn stop(mut self) {
        // SIGTERM lets the nodes stop cleanly; the directory goes after.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
