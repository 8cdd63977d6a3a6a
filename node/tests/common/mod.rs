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

use raftmq_client::{Client, ClientOptions, ClusterStatus, TlsOptions, Token};
use raftmq_node::certs::{Authority, Subject};
use tempfile::TempDir;

/// The cluster id secure test clusters run with.
pub const CLUSTER_ID: &str = "main";

/// TLS and client authentication of a cluster (`Cluster::start_secure`):
/// a CA, each node's certificate, and a users file whose user NAME has the
/// token `NAME:NAME-secret`.
pub struct Security {
    pub dir: PathBuf,
    pub ca: Authority,
}

impl Security {
    pub fn token(name: &str) -> String {
        format!("{name}:{name}-secret")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn users_path(&self) -> PathBuf {
        self.dir.join("users.toml")
    }

    /// Writes the users file: `admin` (who may do anything) and `users`,
    /// each a name and its permission lines (TOML).
    pub fn write_users(&self, users: &[(&str, &str)]) {
        let mut text = String::new();
        let all = [(
            "admin",
            "publish = [\"*\"]\nconsume = [\"*\"]\nmanage = [\"*\"]\nadmin = true",
        )];
        for (name, permissions) in all.iter().chain(users) {
            let secret = raftmq_node::access::hash_secret(&format!("{name}-secret"));
            text.push_str(&format!(
                "[[user]]\nname = \"{name}\"\nsecret = \"{secret}\"\n{permissions}\n\n"
            ));
        }
        std::fs::write(self.users_path(), text).expect("users file");
    }

    /// Writes the PEM files of a certificate for `subject` as NAME.pem and
    /// NAME.key, issued in `cluster`: their paths.
    pub fn issue(&self, cluster: &str, subject: &Subject, name: &str) -> (PathBuf, PathBuf) {
        let issued = self.ca.issue_in(cluster, subject).expect("issue");
        let (cert, key) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, issued.cert).expect("cert");
        std::fs::write(&key, issued.key).expect("key");
        (cert, key)
    }

    /// `run`'s arguments for a node showing `cert` and `key`.
    pub fn node_args(
        &self,
        cluster: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Vec<String> {
        let path = |p: &std::path::Path| p.display().to_string();
        vec![
            "--cluster-id".into(),
            cluster.into(),
            "--tls-cert".into(),
            path(cert),
            "--tls-key".into(),
            path(key),
            "--tls-ca".into(),
            path(&self.ca_path()),
            "--users".into(),
            path(&self.users_path()),
        ]
    }

    /// Client options trusting the CA, with `token` if given.
    pub fn client_options(&self, token: Option<&str>) -> ClientOptions {
        ClientOptions {
            tls: Some(TlsOptions {
                ca_pem: std::fs::read(self.ca_path()).expect("ca"),
                identity: None,
                domain: None,
            }),
            token: token.map(|t| Token::new(t).expect("token")),
            ..Default::default()
        }
    }
}

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
    /// TLS and client authentication, if on.
    security: Option<Security>,
    /// `run` arguments for a node that replace its TLS and users ones (an
    /// impostor's, say).
    node_args: BTreeMap<u64, Vec<String>>,
}

impl Cluster {
    /// Starts `nodes` nodes and waits until they agree on a leader.
    pub async fn start(nodes: u64, extra_args: &[&str]) -> Cluster {
        Cluster::launch(
            TempDir::new().expect("temp dir"),
            nodes,
            extra_args,
            false,
            None,
        )
        .await
    }

    /// Like `start`, with TLS between everyone (each node with its own
    /// certificate of cluster `CLUSTER_ID`) and client authentication:
    /// `users` as in `Security::write_users`.
    pub async fn start_secure(nodes: u64, users: &[(&str, &str)]) -> Cluster {
        let dir = TempDir::new().expect("temp dir");
        let security = Security {
            dir: dir.path().join("security"),
            ca: Authority::new(CLUSTER_ID).expect("ca"),
        };
        std::fs::create_dir_all(&security.dir).expect("security dir");
        std::fs::write(security.ca_path(), security.ca.cert_pem()).expect("ca");
        security.write_users(users);
        for id in 1..=nodes {
            let subject = Subject::node(id, &["127.0.0.1", "localhost"]);
            security.issue(CLUSTER_ID, &subject, &format!("node-{id}"));
        }
        Cluster::launch(dir, nodes, &[], false, Some(security)).await
    }

    pub fn security(&self) -> &Security {
        self.security.as_ref().expect("a secure cluster")
    }

    /// Node `id` starts from now on with `args` instead of its own TLS and
    /// users arguments.
    pub fn set_node_args(&mut self, id: u64, args: Vec<String>) {
        self.node_args.insert(id, args);
    }

    pub fn clear_node_args(&mut self, id: u64) {
        self.node_args.remove(&id);
    }

    /// Like `start`, with each node advertising `localhost:PORT` to
    /// clients and reached by its peers at `127.0.0.1:PORT`.
    pub async fn start_advertising(nodes: u64) -> Cluster {
        Cluster::launch(TempDir::new().expect("temp dir"), nodes, &[], true, None).await
    }

    async fn launch(
        dir: TempDir,
        nodes: u64,
        extra_args: &[&str],
        advertise: bool,
        security: Option<Security>,
    ) -> Cluster {
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
            security,
            node_args: BTreeMap::new(),
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

    /// Node `id`'s metrics page, sample by sample.
    pub async fn scrape(&self, id: u64) -> BTreeMap<String, f64> {
        samples(&self.metrics(id).await)
    }

    /// Sends `signal` (`HUP`, say) to node `id`.
    pub fn signal(&self, id: u64, signal: &str) {
        let child = self.running.get(&id).expect("node running");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} failed");
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

    /// A client of the cluster; on a secure one, `admin`'s.
    pub fn client(&self) -> Client {
        Client::connect_with(
            self.servers(),
            self.client_options(Some(&Security::token("admin"))),
        )
        .expect("client")
    }

    /// Options reaching the cluster, with `token` on a secure one.
    pub fn client_options(&self, token: Option<&str>) -> ClientOptions {
        match &self.security {
            Some(security) => security.client_options(token),
            None => ClientOptions::default(),
        }
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
        let security = match (&self.security, self.node_args.get(&id)) {
            (_, Some(args)) => args.clone(),
            (Some(security), None) => {
                let cert = security.dir.join(format!("node-{id}.pem"));
                let key = security.dir.join(format!("node-{id}.key"));
                security.node_args(CLUSTER_ID, &cert, &key)
            }
            (None, None) => Vec::new(),
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
            .args(&security)
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
        let tls: Vec<String> = match &self.security {
            Some(security) => {
                let path = |name: String| security.dir.join(name).display().to_string();
                vec![
                    "--tls-cert".into(),
                    path(format!("node-{id}.pem")),
                    "--tls-key".into(),
                    path(format!("node-{id}.key")),
                    "--tls-ca".into(),
                    path("ca.pem".into()),
                ]
            }
            None => Vec::new(),
        };
        let output = Command::new(env!("CARGO_BIN_EXE_raftmq-node"))
            .arg(command)
            .arg("--addr")
            .arg(self.addr(id))
            .args(&tls)
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

/// A scraped page: each sample line's `name{labels}` and its value.
pub fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `series` (name with labels, exactly as the page writes it).
pub fn value(page: &BTreeMap<String, f64>, series: &str) -> f64 {
    *page
        .get(series)
        .unwrap_or_else(|| panic!("{series} not on the page"))
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
