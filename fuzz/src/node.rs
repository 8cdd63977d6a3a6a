//! A one-node cluster in this process, on loopback with production
//! storage, for the targets that need a running node.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use raftmq_node::{Node, NodeConfig, Seams};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

/// A node serving on a loopback port until `stop`.
pub struct Running {
    pub node: Node,
    pub addr: String,
    stop: watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
}

/// Starts node 1 of a one-node cluster on `data`: the node, or why it did
/// not start.
pub async fn start(data: &Path, snapshot_every: u64) -> Result<Running, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let mut config = NodeConfig::new(1, BTreeMap::from([(1, addr.clone())]));
    config.snapshot_every = snapshot_every;
    let seams = Seams::production(data, None).map_err(|e| e.to_string())?;
    let node = Node::start(config, seams)
        .await
        .map_err(|e| e.to_string())?;
    let (stop, mut stopped) = watch::channel(false);
    let serving = node.clone();
    let served = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(e) = serving.serve(incoming, shutdown).await {
            tracing::debug!(error = %e, "the fuzzed node stopped");
        }
    });
    Ok(Running {
        node,
        addr,
        stop,
        served,
    })
}

impl Running {
    /// Stops serving and shuts the node down, within 10 s.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .is_err()
        {
            tracing::warn!("the fuzzed node did not stop within 10 s");
        }
        self.node.shutdown().await;
    }

    /// Waits up to `within` for the node to lead and apply its whole log.
    pub async fn settle(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let status = self.node.raft_status();
            if status.leader == Some(1) && status.applied >= status.last_log_index {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}
