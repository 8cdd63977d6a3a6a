//! The one place errors become gRPC statuses.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::access::AuthError;
use crate::broker::ProposeError;
use crate::machine::Rejection;
use crate::raft::{BodyError, HandOffError, MembershipError, SnapshotError, WireError};

pub fn rejected(rejection: &Rejection) -> Status {
    let code = match rejection {
        Rejection::InvalidName { .. }
        | Rejection::InvalidPartitions { .. }
        | Rejection::InvalidPrefetch { .. }
        | Rejection::UnknownPartition { .. }
        | Rejection::NotInFlight { .. }
        | Rejection::ModeMismatch { .. }
        | Rejection::Invalid(_)
        | Rejection::Empty(_) => Code::InvalidArgument,
        Rejection::TopicExists(_) | Rejection::ExchangeExists(_) | Rejection::ConsumerBusy(_) => {
            Code::AlreadyExists
        }
        // RabbitMQ's PRECONDITION_FAILED. Sent without the leader metadata
        // a refusal to write carries, so clients do not retry it.
        Rejection::SettingMismatch { .. }
        | Rejection::InUse { .. }
        | Rejection::Exclusive(_)
        | Rejection::ExchangeInUse { .. }
        | Rejection::NotEmpty { .. } => Code::FailedPrecondition,
        Rejection::UnknownTopic(_)
        | Rejection::UnknownExchange(_)
        | Rejection::UnknownSubscription { .. }
        | Rejection::NoSuchMessage { .. }
        | Rejection::NotDelivered { .. } => Code::NotFound,
        Rejection::LimitReached { .. } | Rejection::TopicFull { .. } => Code::ResourceExhausted,
        Rejection::OutOfOrder { .. } => Code::Aborted,
        Rejection::RepeatForgotten { .. } => Code::AlreadyExists,
    };
    Status::new(code, rejection.to_string())
}

pub fn unauthenticated(error: &AuthError) -> Status {
    Status::unauthenticated(error.to_string())
}

pub fn permission_denied(user: &str, what: &str) -> Status {
    Status::permission_denied(format!("user {user:?} may not {what}"))
}

/// A Raft RPC from outside the cluster. The sending node backs off, as
/// from a peer it cannot reach.
pub fn peer_refused(reason: String) -> Status {
    Status::permission_denied(reason)
}

pub fn propose_failed(error: ProposeError) -> Status {
    match error {
        ProposeError::NotLeader { leader } => not_leader(leader),
        ProposeError::Unknown(_) | ProposeError::ShuttingDown => {
            Status::unavailable(error.to_string())
        }
    }
}

/// FAILED_PRECONDITION with the `x-raftmq-leader` metadata: the leader's
/// address, where the client retries, or empty when no leader is known
/// (the client tries another node). The metadata is what tells this
/// refusal from a precondition of the request failing.
pub fn not_leader(leader: Option<String>) -> Status {
    let mut status = Status::failed_precondition(match &leader {
        Some(addr) => format!("not the leader; the leader is {addr}"),
        None => "not the leader; no leader is known yet".to_string(),
    });
    let value = leader
        .and_then(|addr| MetadataValue::try_from(addr).ok())
        .unwrap_or_else(|| MetadataValue::from_static(""));
    status
        .metadata_mut()
        .insert(raftmq_proto::LEADER_METADATA_KEY, value);
    status
}

/// Ends every stream of a node that is stopping: the client carries on at
/// `leader` when one other than this node is known (the leader metadata, as
/// in `not_leader`), else at another node.
pub fn stopping(leader: Option<String>) -> Status {
    let mut status = Status::unavailable("the node is stopping; carry on at another node");
    if let Some(value) = leader.and_then(|addr| MetadataValue::try_from(addr).ok()) {
        status
            .metadata_mut()
            .insert(raftmq_proto::LEADER_METADATA_KEY, value);
    }
    status
}

pub fn hand_off_failed(error: HandOffError) -> Status {
    match error {
        HandOffError::NotLeader { leader } => not_leader(leader),
        HandOffError::NotVoter(_) => Status::invalid_argument(error.to_string()),
        HandOffError::NoVoter => Status::failed_precondition(error.to_string()),
        HandOffError::NoQuorum | HandOffError::Stopped => Status::unavailable(error.to_string()),
        // Tried and failed, writes held meanwhile: ABORTED is final to the
        // client, so it does not hold them again and again (nor move
        // leadership twice when it moved just after the deadline).
        HandOffError::Behind { .. } | HandOffError::Refused { .. } | HandOffError::TimedOut(_) => {
            Status::aborted(error.to_string())
        }
    }
}

pub fn membership_failed(error: MembershipError) -> Status {
    match error {
        MembershipError::NotLeader { leader } => not_leader(leader),
        MembershipError::AddressConflict { .. } => Status::already_exists(error.to_string()),
        MembershipError::NotMember(_) => Status::not_found(error.to_string()),
        MembershipError::LastVoter(_) => Status::failed_precondition(error.to_string()),
        MembershipError::Behind { .. } | MembershipError::Failed(_) => {
            Status::unavailable(error.to_string())
        }
    }
}

/// A client past its share of consumers (`grpc::Shares`).
pub fn share_full(holder: &str, consumers_max: u32) -> Status {
    Status::resource_exhausted(format!(
        "this {holder} has {consumers_max} consumers attached, its share; close one first"
    ))
}

pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// A write whose commit did not come in time: it may still commit.
pub fn commit_timed_out() -> Status {
    Status::unavailable("timed out waiting for commit; the outcome is unknown")
}

/// The state machine detached the consumer, or its stream broke.
pub fn consumer_detached() -> Status {
    Status::unavailable(
        "consumer detached (leader change or broken stream); subscribe again to resume",
    )
}

/// A peer's Raft RPC this node could not take or answer.
pub fn raft_wire(error: &WireError) -> Status {
    match error {
        WireError::UnknownGroup(_) | WireError::BadRequest(_) => {
            Status::invalid_argument(error.to_string())
        }
        WireError::Reply(_) => Status::internal(error.to_string()),
        // Retried at once by the sender, which starts the snapshot over.
        WireError::BodiesMissing(_) => Status::failed_precondition(error.to_string()),
    }
}

/// A delivery whose body this node cannot read: the stream ends, and the
/// client subscribes again (perhaps to another node).
pub fn body_unreadable(error: &BodyError) -> Status {
    Status::unavailable(format!("a message body is unreadable here: {error}"))
}

/// Something this node got wrong; the client cannot fix it by retrying.
pub fn snapshot_failed(error: &SnapshotError) -> Status {
    match error {
        SnapshotError::NothingApplied => Status::failed_precondition(error.to_string()),
        SnapshotError::Stopped => Status::unavailable(error.to_string()),
        SnapshotError::TimedOut(_) => Status::deadline_exceeded(error.to_string()),
    }
}

pub fn internal(message: impl Into<String>) -> Status {
    Status::internal(message)
}
