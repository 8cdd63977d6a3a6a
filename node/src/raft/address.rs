//! A member's two addresses, as the cluster's membership records them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a member is reached: `peer` by the other nodes' Raft, `client` by
/// clients (what redirects and `ClusterStatus` name). They differ when
/// clients sit outside the nodes' network, as on the host of a compose
/// cluster (`nodeN:700N` inside, `127.0.0.1:700N` outside).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub peer: String,
    pub client: String,
}

impl Addresses {
    /// The same address for peers and clients.
    pub fn same(addr: impl Into<String>) -> Self {
        let addr = addr.into();
        Addresses {
            client: addr.clone(),
            peer: addr,
        }
    }
}

impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.peer == self.client {
            write!(f, "{}", self.peer)
        } else {
            write!(f, "{} (clients: {})", self.peer, self.client)
        }
    }
}
