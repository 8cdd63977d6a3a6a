//! The cluster administration RPCs: leadership hand-off and membership.

use std::time::Duration;

use raftmq_proto::v1;
use tokio::time::Instant;
use tonic::Status;

use super::broker_service::BrokerService;
use super::convert;
use super::status::{hand_off_failed, invalid, membership_failed, not_leader};
use crate::raft::Addresses;

/// How long an added node may take to catch up before AddNode answers (it
/// stays a learner, and asking again finishes the change).
const CATCH_UP_WITHIN: Duration = Duration::from_secs(30);
/// Longest node address accepted: a DNS name and a port.
const ADDRESS_BYTES_MAX: usize = 255;

pub async fn transfer_leader(
    service: &BrokerService,
    request: v1::TransferLeaderRequest,
) -> Result<v1::TransferLeaderResponse, Status> {
    let started = Instant::now();
    let leader_id = service
        .broker
        .hand_off(request.node_id)
        .await
        .map_err(hand_off_failed)?;
    Ok(v1::TransferLeaderResponse {
        leader_id,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

pub async fn add_node(
    service: &BrokerService,
    request: v1::AddNodeRequest,
) -> Result<v1::AddNodeResponse, Status> {
    let peer = host_port("address", &request.address)?;
    let client = match request.client_address.trim() {
        "" => peer.clone(),
        client => host_port("client_address", client)?,
    };
    let members = service
        .broker
        .raft
        .add_node(request.node_id, Addresses { peer, client }, CATCH_UP_WITHIN)
        .await
        .map_err(membership_failed)?;
    Ok(v1::AddNodeResponse {
        members: convert::members(members),
    })
}

/// Removing the leader hands leadership over first and answers with a
/// redirect: the client asks the new leader, which removes this node.
pub async fn remove_node(
    service: &BrokerService,
    request: v1::RemoveNodeRequest,
) -> Result<v1::RemoveNodeResponse, Status> {
    let broker = &service.broker;
    if request.node_id == broker.id && broker.leadership().is_ok() {
        broker.hand_off(None).await.map_err(hand_off_failed)?;
        return Err(not_leader(broker.leadership().err().flatten()));
    }
    let members = broker
        .raft
        .remove_node(request.node_id)
        .await
        .map_err(membership_failed)?;
    Ok(v1::RemoveNodeResponse {
        members: convert::members(members),
    })
}

/// `address`, trimmed, when it is `HOST:PORT` (a DNS name, an IPv4
/// address or a bracketed IPv6 one); INVALID_ARGUMENT naming `field` if not.
fn host_port(field: &str, address: &str) -> Result<String, Status> {
    let address = address.trim();
    if is_host_port(address) {
        Ok(address.to_string())
    } else {
        Err(invalid(format!("{field} {address:?} is not HOST:PORT")))
    }
}

fn is_host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        }
    };
    address.len() <= ADDRESS_BYTES_MAX && host_ok && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn an_address_is_host_and_port() {
        assert!(is_host_port("127.0.0.1:7004"));
        assert!(is_host_port("node4:7004"));
        assert!(!is_host_port("node4"));
        assert!(!is_host_port(":7004"));
        assert!(!is_host_port("node4:70000"));
        assert!(!is_host_port(&format!("{}:1", "h".repeat(300))));
        assert!(is_host_port("[::1]:7004"));
        assert!(!is_host_port("::1:7004"));
        assert!(!is_host_port("http://node4:7004"));
        assert!(!is_host_port("node4/x:7004"));
    }
}
