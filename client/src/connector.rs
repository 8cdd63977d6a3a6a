//! The transport seam: how the client turns a node's endpoint into a
//! channel. TCP by default; the simulation hands in one that dials its
//! simulated network, so the real client runs there unchanged (as the node
//! takes its own connector).

use tonic::transport::{Channel, Endpoint};

/// Opens the channel to one node. The endpoint already carries the client's
/// timeouts and keepalive settings; the channel should connect lazily, on
/// first use, and reconnect after failures.
pub trait Connector: Send + Sync + std::fmt::Debug + 'static {
    fn channel(&self, endpoint: Endpoint) -> Channel;
}

/// Real TCP.
#[derive(Debug)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn channel(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_lazy()
    }
}
