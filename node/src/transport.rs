//! The transport seam: the node never dials or binds sockets itself. It is
//! handed a `Connector` for outbound channels and a stream of accepted
//! connections for its server, so the simulation can hand it simulated ones
//! (DESIGN.md, "Seams"; STACK.md).

use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Dial timeout: a peer that does not accept within it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 pings find a dead connection (a lost frame, a paused peer) so the
/// next RPC reconnects. The timeout stays below the election timeout.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(1000);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid peer address {addr:?}: {source}")]
    InvalidAddress {
        addr: String,
        source: tonic::transport::Error,
    },
}

/// Opens channels to peers.
pub trait Connector: Send + Sync + 'static {
    /// A channel to `addr` ("host:port") that connects on first use and
    /// reconnects after failures.
    fn channel(&self, addr: &str) -> Result<Channel, TransportError>;
}

/// The endpoint settings every peer channel uses, real or simulated; with
/// `tls`, the channel speaks TLS.
pub fn endpoint(addr: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, TransportError> {
    let invalid = |source| TransportError::InvalidAddress {
        addr: addr.to_string(),
        source,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(invalid)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// Real TCP, with TLS when the node has it.
pub struct TcpConnector {
    pub tls: Option<ClientTlsConfig>,
}

impl Connector for TcpConnector {
    fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        Ok(endpoint(addr, self.tls.as_ref())?.connect_lazy())
    }
}

/// What happens to one outgoing Raft RPC. Production sends each once, at
/// once; a simulation duplicates and delays some (stale copies arriving
/// late are reordered messages) to check that Raft shrugs them off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcFate {
    Send,
    /// Sent twice in a row.
    Duplicate,
    /// Sent, and a copy sent again after the delay.
    StaleCopy(Duration),
    /// Sent after the delay.
    Delay(Duration),
}

/// Decides each outgoing Raft RPC's fate (the simulation's network faults
/// above TCP).
pub trait RpcFaults: Send + Sync + 'static {
    fn fate(&self, target: u64) -> RpcFate;
}
