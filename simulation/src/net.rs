//! The transport seams under turmoil: the node's server is fed turmoil's
//! accepted connections, and both its peer channels and the client crate's
//! channels dial through turmoil.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use hyper_util::rt::TokioIo;
use raftmq_node::transport::{endpoint, Connector, TransportError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// Opens a simulated TCP connection to the host and port `uri` names.
async fn dial(uri: Uri) -> io::Result<TokioIo<turmoil::net::TcpStream>> {
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = turmoil::net::TcpStream::connect((host, port)).await?;
    Ok(TokioIo::new(stream))
}

/// Dials peers over turmoil's simulated TCP.
pub struct SimConnector;

impl Connector for SimConnector {
    fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        Ok(endpoint(addr, None)?.connect_with_connector_lazy(tower::service_fn(dial)))
    }
}

/// Dials nodes for the client crate over turmoil's simulated TCP, keeping
/// the client's own timeouts and keepalives on the endpoint.
#[derive(Debug)]
pub struct ClientConnector;

impl raftmq_client::Connector for ClientConnector {
    fn channel(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(tower::service_fn(dial))
    }
}

/// The connections a simulated node's server accepts.
pub fn incoming(
    listener: turmoil::net::TcpListener,
) -> impl Stream<Item = io::Result<SimConnection>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener
            .accept()
            .await
            .map(|(stream, _)| SimConnection(stream));
        Some((accepted, listener))
    })
}

/// A simulated TCP connection, as tonic's server wants it.
pub struct SimConnection(turmoil::net::TcpStream);

impl Connected for SimConnection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
