//! The one error type of the client library.

use std::time::Duration;

use tonic::Code;

/// Everything that can go wrong in the client library.
///
/// It is `Clone` because one failure (a broken stream, a rejected batch) is
/// reported to every confirm waiting on it. It carries the gRPC code and
/// message rather than a `tonic::Status` so that callers can match on the code
/// without depending on tonic's non-cloneable status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// `Client::connect` needs at least one address to start from.
    #[error("no server addresses given")]
    NoSeeds,

    /// A server address could not be turned into an `http://` URI.
    #[error("invalid server address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },

    /// Options that contradict each other or are zero where that makes no
    /// sense; caught when the client or producer is built, not mid-flight.
    #[error("invalid options: {reason}")]
    InvalidOptions { reason: String },

    /// A server answered with a status that retrying cannot fix (for example
    /// NOT_FOUND or INVALID_ARGUMENT). The outcome is known: nothing happened.
    #[error("{message} ({code:?})")]
    Rpc { code: Code, message: String },

    /// No leader could be reached before the retry deadline or attempt limit.
    /// For writes the outcome is unknown: an earlier attempt may have been
    /// applied even though its answer was lost.
    #[error(
        "no leader reachable after {attempts} attempts in {elapsed:?}; last error: {message} ({code:?})"
    )]
    NoLeader {
        attempts: u32,
        elapsed: Duration,
        code: Code,
        message: String,
    },

    /// A stream to the leader kept breaking without progress until its
    /// recovery budget ran out. Outcomes of unanswered publishes are unknown.
    #[error("stream to the leader broke {restarts} times in {elapsed:?} without progress")]
    StreamBroken { restarts: u32, elapsed: Duration },

    /// The server answered something the contract rules out (for example a
    /// confirm with the wrong number of positions).
    #[error("protocol violation: {reason}")]
    Protocol { reason: String },

    /// A single message larger than a whole publish request may be.
    #[error("message of {bytes} bytes exceeds the request limit of {bytes_max} bytes")]
    MessageTooLarge { bytes: usize, bytes_max: usize },

    /// The producer's background task has stopped: it was closed or dropped.
    #[error("producer is closed")]
    ProducerClosed,

    /// No reply came within the request's timeout.
    #[error("no reply within {waited:?}")]
    NoReply { waited: Duration },

    /// A requester already has this many requests waiting for replies.
    #[error("{max} requests are already waiting for replies")]
    RequestsPending { max: usize },

    /// The requester's reply consumer stopped (its topic is gone or its
    /// recovery gave up); make a new requester.
    #[error("the reply topic's consumer stopped; make a new requester")]
    RepliesClosed,
}

impl ClientError {
    /// The gRPC code behind this error, when a server or the transport gave one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc { code, .. } | ClientError::NoLeader { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<&tonic::Status> for ClientError {
    fn from(status: &tonic::Status) -> Self {
        ClientError::Rpc {
            code: status.code(),
            message: describe(status),
        }
    }
}

/// Causes followed when describing a status; real chains are 2 or 3 deep.
const CAUSES_MAX: usize = 8;

/// The status message followed by its transport causes, for example
/// "tcp connect error: Connection refused (os error 111)": a status made on
/// this side otherwise hides the one detail that explains it.
pub(crate) fn describe(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    for _ in 0..CAUSES_MAX {
        let Some(cause) = source else { break };
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
