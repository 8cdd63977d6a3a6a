//! The gRPC layer: translates between protobuf and commands, holds the
//! consumer streams, and maps every error to a `tonic::Status`. Only this
//! layer knows protobuf and `tonic::Status`.

mod broker_service;
mod cluster;
mod convert;
mod date;
mod exchanges;
mod gate;
mod observe;
mod raft_client;
mod raft_service;
mod shares;
mod status;

pub use broker_service::BrokerService;
pub use date::date_header;
pub use gate::{Gate, PeerRefusal, Refusals};
pub use observe::{code_name, request_stats, ObserveLayer, RequestStats};
pub use raft_client::GrpcPeers;
pub use raft_service::RaftService;
pub use shares::Shares;
