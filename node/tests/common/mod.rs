//! A real cluster for integration tests: `raftmq-node run` processes on
//! loopback ports, each with its own data directory, that a test can
//! SIGKILL, SIGTERM and restart.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code)]

pub mod traffic;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use raftmq_client::{Client, ClusterStatus};
use tempfile::TempDir;

pub struct Cluster {
    dir: TempDir,
    peers: BTreeMap<u64, String>,
    /// Each node's Prometheus address.
    metrics: BTreeMap<u64, String>,
    running: BTreeMap<u64, Child>,
    extra_args: Vec<String>,
    /// Nodes started with `--join`, and the node they join through.
    joining: BTreeMap<u64, u64>,
    /// Whether nodes advertise `localhost:PORT` to clients (`--advertise`)
    /// while peers reach them at `127.0.0.1:PORT`.
    advertise: bool,
}

impl Cluster {
    /// Starts `nodes` nodes and waits until they agree on a leader.
    pub async fn start(nodes: u64, extra_args: &[&str]) -> Cluster {
        Cluster::start_with(nodes, extra_args, false).await
    }

    /// Like `start`, with each node advertising `localhost:PORT` to
    /// clients and reached by its peers at `127.0.0.1:PORT`.
    pub async fn start_advertising(nodes: u64) -> Cluster {
        Cluster::start_with(nodes, &[], true).await
    }

    async fn start_with(nodes: u64, extra_args: &[&str], advertise: bool) -> Cluster {
        let dir = TempDir::new().expect("temp dir");
        let peers = (1..=nodes)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let metrics = (1..=nodes)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut cluster = Cluster {
            dir,
            peers,
            metrics,
            running: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            joining: BTreeMap::new(),
            advertise,
        };
        for id in 1..=nodes {
            cluster.spawn(id);
        }
        cluster.wait_for_leader(None).await;
        cluster
    }

    /// Node `id`'s metrics page (Prometheus text), fetched over plain HTTP.
    pub async fn metrics(&self, id: u64) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.metrics[&id])
            .await
            .expect("metrics port");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let mut page = String::new();
        stream.read_to_string(&mut page).await.expect("response");
        page
    }

    /// Where node `id` serves its metrics and status page.
    pub fn metrics_addr(&self, id: u64) -> &str {
        &self.metrics[&id]
    }

    pub fn servers(&self) -> Vec<String> {
        self.peers.values().cloned().collect()
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.peers[&id]
    }

    /// Where node `id` tells clients to reach it.
    pub fn client_addr(&self, id: u64) -> String {
        if self.advertise {
            self.peers[&id].replace("127.0.0.1", "localhost")
        } else {
            self.peers[&id].clone()
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.servers()).expect("client")
    }

    /// Where the nodes' logs and data live.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Starts a new node `id` on a fresh port that joins the cluster
    /// through node `seed` (`raftmq-node run --join`).
    pub fn spawn_joining(&mut self, id: u64, seed: u64) {
        assert!(!self.peers.contains_key(&id), "node {id} exists");
        self.peers.insert(id, format!("127.0.0.1:{}", free_port()));
        self.metrics
            .insert(id, format!("127.0.0.1:{}", free_port()));
        self.joining.insert(id, seed);
        self.spawn(id);
    }

    /// Stops node `id` (SIGKILL) and leaves it out of `servers` and of
    /// every wait from now on: it was removed from the cluster.
    pub fn forget(&mut self, id: u64) {
        self.kill(id);
        self.peers.remove(&id);
    }

    /// Starts node `id` on its existing data, if any.
    pub fn spawn(&mut self, id: u64) {
        let membership: Vec<String> = match self.joining.get(&id) {
            Some(seed) => vec![
                "--join".into(),
                self.peers[seed].clone(),
                "--addr".into(),
                self.peers[&id].clone(),
            ],
            None => {
                let peers: Vec<String> = self
                    .peers
                    .iter()
                    .filter(|(id, _)| !self.joining.contains_key(id))
                    .map(|(id, addr)| format!("{id}={addr}"))
                    .collect();
                vec!["--peers".into(), peers.join(",")]
            }
        };
        let advertised: Vec<String> = match self.joining.contains_key(&id) {
            true => vec![id],
            false => self
                .peers
                .keys()
                .copied()
                .filter(|id| !self.joining.contains_key(id))
                .collect(),
        }
        .into_iter()
        .filter(|_| self.advertise)
        .map(|id| format!("{id}={}", self.client_addr(id)))
        .collect();
        let advertise = match advertised.is_empty() {
            true => vec![],
            false => vec!["--advertise".to_string(), advertised.join(",")],
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_raftmq-node"))
            .arg("run")
            .arg("--id")
            .arg(id.to_string())
            .args(&membership)
            .args(&advertise)
            .arg("--data")
            .arg(self.data_dir(id))
            .arg("--metrics-listen")
            .arg(&self.metrics[&id])
            .args(&self.extra_args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn raftmq-node");
        self.running.insert(id, child);
    }

    /// SIGKILLs node `id`: no shutdown, no flush.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.running.remove(&id) {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Sends SIGTERM to node `id` and waits up to `within` for it to exit:
    /// its exit status, or `None` if it was still running (then it is
    /// SIGKILLed).
    pub fn terminate(&mut self, id: u64, within: Duration) -> Option<ExitStatus> {
        let child = self.running.get(&id).expect("node running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_exit(id, within)
    }

    /// Waits up to `within` for node `id` to exit on its own: its status,
    /// or `None` if it still runs (then it is SIGKILLed).
    pub fn wait_exit(&mut self, id: u64, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let mut child = self.running.remove(&id).expect("node running");
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.running.contains_key(&id)
    }

    /// Node `id`'s answer to ClusterStatus, if it answers.
    pub async fn status(&self, id: u64) -> Option<ClusterStatus> {
        self.client().cluster_status(self.addr(id)).await.ok()
    }

    /// Waits (up to `within`) until every running node is leader or
    /// follower of one agreed leader and has applied what it knows
    /// committed: a restarted node is serving again.
    pub async fn wait_all_serving(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last.clear();
            for id in self.running.keys() {
                last.push((*id, self.status(*id).await));
            }
            let serving = last.iter().all(|(_, status)| {
                status.as_ref().is_some_and(|s| {
                    matches!(s.role.as_str(), "leader" | "follower")
                        && s.leader_id.is_some()
                        && s.applied_index >= s.commit_index
                })
            });
            let leaders: BTreeSet<_> = last
                .iter()
                .map(|(_, s)| s.as_ref().and_then(|s| s.leader_id))
                .collect();
            if serving && leaders.len() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "nodes not all serving within {within:?}: {last:#?}; logs in {}",
            self.dir.path().display()
        );
    }

    /// Runs `raftmq-node health` against node `id`: whether it passed, and
    /// what it printed.
    pub fn health(&self, id: u64, extra_args: &[&str]) -> (bool, String) {
        self.node_command("health", id, extra_args)
    }

    /// `raftmq-node hand-off` against node `id` (the preStop hook).
    pub fn hand_off(&self, id: u64) -> (bool, String) {
        self.node_command("hand-off", id, &[])
    }

    /// Runs `raftmq-node COMMAND --addr NODE ARGS`: whether it exited 0,
    /// and what it printed.
    fn node_command(&self, command: &str, id: u64, extra_args: &[&str]) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_raftmq-node"))
            .arg(command)
            .arg("--addr")
            .arg(self.addr(id))
            .args(extra_args)
            .stdin(Stdio::null())
            .output()
            .expect("run raftmq-node");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Node `id`'s log so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    /// The id of the node every live node names as leader, waiting up to
    /// 30 s; with `not` set, a leader other than that node.
    pub async fn wait_for_leader(&self, not: Option<u64>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = self.client();
        while Instant::now() < deadline {
            let mut leaders = Vec::new();
            for id in self.running.keys() {
                if let Ok(status) = client.cluster_status(self.addr(*id)).await {
                    leaders.push(status.leader_id);
                }
            }
            let agreed =
                leaders.len() == self.running.len() && leaders.windows(2).all(|w| w[0] == w[1]);
            if let (true, Some(Some(leader))) = (agreed, leaders.first()) {
                if Some(*leader) != not && self.running.contains_key(leader) {
                    return *leader;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no leader agreed on within 30 s; logs in {}",
            self.dir.path().display()
        );
    }
}

/// Three nodes with the production defaults, a client, and `topic`.
pub async fn cluster_with_topic(topic: &str, partitions: u32) -> (Cluster, Client) {
    let cluster = Cluster::start(3, &[]).await;
    let client = cluster.client();
    client
        .create_topic(topic, partitions)
        .await
        .expect("create topic");
    (cluster, client)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Keep the nodes' logs and data for a post-mortem.
            let dir = std::mem::replace(&mut self.dir, TempDir::new().expect("temp dir"));
            eprintln!("cluster logs and data kept in {}", dir.keep().display());
        }
    }
}

/// A loopback port for a node, never handed out twice in this process.
///
/// Ports the OS picks (`:0`) come from the ephemeral range, where a
/// parallel test can get the same port back, or an outgoing connection can
/// take it, before the node binds it. These come from below that range
/// (32768+ on Linux), from a per-process counter, spread by process id, and
/// are checked free.
fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const PER_PROCESS: u32 = 64;
    const SLOTS: u32 = 190; // FIRST + SLOTS * PER_PROCESS stays below 32768
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = FIRST + (std::process::id() % SLOTS) * PER_PROCESS;
    for _ in 0..SLOTS * PER_PROCESS {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % (SLOTS * PER_PROCESS);
        let port = FIRST + (base - FIRST + offset) % (SLOTS * PER_PROCESS);
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port below 32768");
}
