//! raftmq-node: a broker node. Layers, from the bottom (ARCHITECTURE.md):
//! `machine` (pure state machine) and `storage` (the `Disk` seam), `raft`
//! (openraft adapters), `broker` (proposer, sessions), `grpc` (services),
//! and `node` which assembles them behind the seams (`transport`, `clock`).

pub mod access;
pub mod broker;
pub mod certs;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod histogram;
pub mod machine;
pub mod metrics;
pub mod node;
pub mod planted;
pub mod raft;
pub mod status_page;
pub mod storage;
pub mod tls;
pub mod transport;

pub use config::NodeConfig;
pub use node::{Node, NodeError, Seams};
