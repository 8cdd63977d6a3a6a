//! Tunables of the client and the producer, with defaults that suit a
//! three-node cluster on one network.

use std::time::Duration;

use crate::ClientError;

/// How the client talks to the cluster and how long it keeps trying.
///
/// Fields are public so that callers can override a few with struct update
/// syntax: `ClientOptions { retry_deadline: Duration::from_secs(5), ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// TCP connect limit per attempt: a dead node should cost about this much
    /// before the client moves on to the next one.
    pub connect_timeout: Duration,
    /// Deadline of every unary RPC and of opening a stream; also sent to the
    /// server as `grpc-timeout` on unary calls so it can give up too.
    pub rpc_timeout: Duration,
    /// HTTP/2 ping interval: detects a silently dead leader under a
    /// long-lived stream, where no request would ever time out.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// Overall time one operation may spend looking for the leader before it
    /// fails; also the length of one attempt of a stream's recovery (a
    /// consumer or producer logs each attempt that found no leader, and
    /// tries again until its own `give_up_after`).
    pub retry_deadline: Duration,
    /// First retry delay; doubled on each further failure.
    pub backoff_initial: Duration,
    /// Ceiling of the retry delay: low, so that a client finds the next
    /// leader soon after it is elected (failover is bounded by the election
    /// plus this).
    pub backoff_max: Duration,
    /// TLS to the nodes; `None` is plaintext.
    pub tls: Option<TlsOptions>,
    /// Sent with every request (`authorization: Bearer NAME:SECRET`) to a
    /// cluster with client authentication on.
    pub token: Option<Token>,
}

/// TLS settings: whom to trust, and optionally a client certificate (which
/// authenticates the client as the user it names, instead of a token).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM of the CA that signed the nodes' certificates.
    pub ca_pem: Vec<u8>,
    /// PEM certificate and key of this client.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to check the node's certificate for, instead of the host of
    /// the address dialled.
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// A user's token, `NAME:SECRET`; its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Checks the shape (the server checks the rest).
    pub fn new(token: impl Into<String>) -> Result<Token, ClientError> {
        let token = token.into();
        let token = token.trim().to_string();
        match token.split_once(':') {
            Some((name, secret)) if !name.is_empty() && !secret.is_empty() => Ok(Token(token)),
            _ => Err(ClientError::InvalidOptions {
                reason: "a token is NAME:SECRET".to_string(),
            }),
        }
    }

    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.0.split_once(':').map_or("", |(name, _)| name);
        write!(f, "Token({name}:***)")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            tls: None,
            token: None,
        }
    }
}

impl ClientOptions {
    /// Rejects values that would make the client spin (zero durations) or
    /// never retry.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let nonzero = [
            ("connect_timeout", self.connect_timeout),
            ("rpc_timeout", self.rpc_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
            ("retry_deadline", self.retry_deadline),
            ("backoff_initial", self.backoff_initial),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, value)| value.is_zero()) {
            return invalid(format!("{name} must be greater than zero"));
        }
        if self.backoff_initial > self.backoff_max {
            return invalid("backoff_initial must not exceed backoff_max".to_string());
        }
        Ok(())
    }
}

/// tonic's default server-side decoding limit is 4 MiB; a request must stay
/// below it with room for the envelope.
const REQUEST_BYTES_MAX_DEFAULT: usize = 4_000_000;
/// Unanswered publish requests the producer keeps on the stream.
const WINDOW_DEFAULT: usize = 256;
/// How long a producer keeps unconfirmed messages while no leader answers:
/// long enough for a whole cluster to restart, short enough that a caller
/// awaiting a confirm hears of an outage that needs a person.
const PRODUCER_GIVE_UP_AFTER_DEFAULT: Duration = Duration::from_secs(300);
/// Messages one publish request may carry.
const BATCH_MAX_DEFAULT: usize = 512;

const _: () = assert!(WINDOW_DEFAULT >= 1 && BATCH_MAX_DEFAULT >= 1);
const _: () = assert!(REQUEST_BYTES_MAX_DEFAULT < 4 * 1024 * 1024);

/// Limits of one `Producer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerOptions {
    /// Most unanswered publish requests in flight; `send` waits when the
    /// window is full, which is the producer's back-pressure.
    pub window: usize,
    /// Most messages per publish request.
    pub batch_max: usize,
    /// Most encoded bytes per publish request; also the largest message.
    pub request_bytes_max: usize,
    /// With requests in flight and no confirm for this long, the stream is
    /// presumed stuck (for example on a leader cut off from its quorum, or
    /// paused) and is re-opened through whoever is leader now. A new leader
    /// is elected within about two seconds; a confirm that is merely slow
    /// costs only a re-send, which the producer id makes harmless.
    pub confirm_timeout: Duration,
    /// How long unconfirmed messages are kept and re-sent while no leader
    /// answers (counted from the first break without progress); then their
    /// confirms fail with `StreamBroken`, outcome unknown.
    pub give_up_after: Duration,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            window: WINDOW_DEFAULT,
            batch_max: BATCH_MAX_DEFAULT,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            confirm_timeout: Duration::from_secs(3),
            give_up_after: PRODUCER_GIVE_UP_AFTER_DEFAULT,
        }
    }
}

impl ProducerOptions {
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        if self.window == 0 || self.batch_max == 0 {
            return invalid("window and batch_max must be at least 1".to_string());
        }
        if self.request_bytes_max < crate::batch::REQUEST_OVERHEAD_BYTES_MAX * 2 {
            return invalid("request_bytes_max is too small to carry a message".to_string());
        }
        if self.confirm_timeout.is_zero() || self.give_up_after.is_zero() {
            return invalid(
                "confirm_timeout and give_up_after must be greater than zero".to_string(),
            );
        }
        Ok(())
    }
}

/// How a subscription's consumers share its messages (set when the
/// subscription is created).
pub use raftmq_proto::v1::SubscriptionMode;

/// Where a new subscription starts, in each partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartAt {
    /// The earliest retained message.
    #[default]
    Earliest,
    /// After the messages published so far.
    Latest,
    /// This offset, or the nearest retained one.
    Offset(u64),
    /// The first message published at or after this time, ms since the
    /// Unix epoch (the leader's clock).
    Time(u64),
}

impl StartAt {
    fn position(self) -> raftmq_proto::v1::StartPosition {
        use raftmq_proto::v1::StartPosition;
        match self {
            StartAt::Earliest => StartPosition::Earliest,
            StartAt::Latest => StartPosition::Latest,
            StartAt::Offset(_) => StartPosition::Offset,
            StartAt::Time(_) => StartPosition::Time,
        }
    }
}

/// How a consumer attaches, and the settings of the subscription if this
/// attach creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Most unacknowledged messages the consumer holds.
    pub prefetch: u32,
    /// `None` joins an existing subscription as it is (a new one is
    /// failover); a mode that differs from an existing subscription's is
    /// refused.
    pub mode: Option<SubscriptionMode>,
    /// An unacked message returns after this long, counting a failure.
    pub ack_timeout: Option<Duration>,
    /// Failures after which a message moves to `dead_letter_topic` (0:
    /// unlimited).
    pub max_deliveries: u32,
    /// An existing topic for rejected and over-delivered messages.
    pub dead_letter_topic: Option<String>,
    /// Or an existing exchange that routes them (`x-dead-letter-exchange`),
    /// by `dead_letter_routing_key`, else by the topic's name.
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// Where a new subscription starts (a replay, before the end).
    pub start: StartAt,
    /// How long `next` keeps re-subscribing without progress before it
    /// fails with `StreamBroken`. `None` (the default): for as long as it
    /// takes, so a consumer daemon outlives a whole-cluster restart; each
    /// attempt that finds no leader (one per `retry_deadline`) is logged.
    pub give_up_after: Option<Duration>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            prefetch: 100,
            mode: None,
            ack_timeout: None,
            max_deliveries: 0,
            dead_letter_topic: None,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            start: StartAt::Earliest,
            give_up_after: None,
        }
    }
}

impl SubscribeOptions {
    /// The request `client_id` sends (an exclusive topic admits only its
    /// owner's consumers).
    pub(crate) fn request(
        &self,
        topic: &str,
        subscription: &str,
        client_id: u64,
    ) -> raftmq_proto::v1::SubscribeRequest {
        raftmq_proto::v1::SubscribeRequest {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            prefetch: self.prefetch,
            mode: self.mode.unwrap_or(SubscriptionMode::Unspecified) as i32,
            ack_timeout_ms: self.ack_timeout.map_or(0, |t| t.as_millis() as u64),
            max_deliveries: self.max_deliveries,
            dead_letter_topic: self.dead_letter_topic.clone(),
            dead_letter_exchange: self.dead_letter_exchange.clone(),
            dead_letter_routing_key: self.dead_letter_routing_key.clone(),
            start: self.start.position() as i32,
            start_offset: match self.start {
                StartAt::Offset(offset) => offset,
                _ => 0,
            },
            start_time_ms: match self.start {
                StartAt::Time(at_ms) => at_ms,
                _ => 0,
            },
            client_id,
        }
    }
}

/// A topic's retention bounds (0 is unlimited), its messages' time to
/// live, its lifetime, and how to declare it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicOptions {
    pub max_messages: u64,
    pub max_bytes: u64,
    /// Every message expires this long after it is published (0: never):
    /// never delivered after, dead-lettered with reason `expired` where
    /// the subscription has a dead-letter topic. A message's own
    /// `Properties::ttl_ms`, if shorter, wins.
    pub message_ttl_ms: u32,
    /// Fail with ALREADY_EXISTS if the topic exists, whatever its
    /// settings, instead of declaring it.
    pub fail_if_exists: bool,
    /// Only this client's consumers may attach (others may publish to
    /// it); needs `expires`, its lease.
    pub exclusive: bool,
    /// Deleted once it has had no consumer this long (RabbitMQ's
    /// `x-expires`); `None`: never. Whole milliseconds, at most 49 days.
    pub expires: Option<Duration>,
    /// A stream: messages stay whether or not acked, for replay
    /// (`StartAt`), until older than `max_age` or past the limits.
    pub stream: bool,
    /// A stream's age limit; `None`: none.
    pub max_age: Option<Duration>,
    /// The highest message priority, 0 (none) to 10 (`x-max-priority`):
    /// higher goes first; order per key holds within a priority.
    pub max_priority: u32,
    /// What a publish past `max_messages` / `max_bytes` does: refused
    /// (the default) or stored, dropping the oldest (`Overflow::DropHead`).
    pub overflow: Overflow,
}

pub use raftmq_proto::v1::Overflow;

/// What must hold for a topic to be deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Only if no consumer is attached to any of its subscriptions.
    pub if_unused: bool,
    /// Only if it retains no message.
    pub if_empty: bool,
}

/// What a nack asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackOptions {
    /// Send the messages to the dead-letter topic (dropped without one)
    /// instead of redelivering them.
    pub reject: bool,
    /// Redeliver no sooner than this.
    pub delay: Duration,
}

fn invalid(reason: String) -> Result<(), ClientError> {
    Err(ClientError::InvalidOptions { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults must pass their own validation, or `Client::connect`
    /// and `Client::producer` would fail out of the box.
    #[test]
    fn defaults_are_valid() {
        assert_eq!(ClientOptions::default().validate(), Ok(()));
        assert_eq!(ProducerOptions::default().validate(), Ok(()));
    }

    #[test]
    fn contradictions_are_rejected() {
        let backwards = ClientOptions {
            backoff_initial: Duration::from_secs(2),
            ..Default::default()
        };
        assert!(backwards.validate().is_err());
        let no_window = ProducerOptions {
            window: 0,
            ..Default::default()
        };
        assert!(no_window.validate().is_err());
    }
}
