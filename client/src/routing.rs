//! Where the next attempt of a leader-bound call goes: the pure decision
//! behind `Client`'s retry loop, kept free of I/O so it can be tested by table.

use std::time::Duration;

use tonic::Code;

use crate::backoff::Backoff;

/// Redirects followed without delay before backing off: two nodes that point
/// at each other during an election must not be ping-ponged at full speed.
const REDIRECTS_IMMEDIATE_MAX: u32 = 2;

/// What a failed attempt tells the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: Code,
    /// The node answered that it is not the leader: it sent
    /// `x-raftmq-leader`, with the leader's address or empty.
    pub not_leader: bool,
    /// The leader address a follower named in `x-raftmq-leader`, if any.
    pub leader: Option<String>,
    /// The status was made on this side (connect failure, reset stream,
    /// timeout) rather than sent by a server.
    pub local: bool,
}

impl Failure {
    pub(crate) fn from_status(status: &tonic::Status) -> Failure {
        let hint = status.metadata().get(raftmq_proto::LEADER_METADATA_KEY);
        let leader = hint
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_string);
        Failure {
            code: status.code(),
            not_leader: hint.is_some(),
            leader,
            local: std::error::Error::source(status).is_some(),
        }
    }
}

/// The router's answer to a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try `address` after waiting `delay`.
    Retry { address: String, delay: Duration },
    /// The failure is the answer; retrying cannot change it.
    Fail,
}

/// The retry state of one operation: seed rotation, backoff and redirects.
#[derive(Debug)]
pub(crate) struct Router {
    seeds: Vec<String>,
    seed_next: usize,
    backoff: Backoff,
    redirects_in_a_row: u32,
}

impl Router {
    /// `start` picks the first seed to rotate to, so that operations spread
    /// their first tries over the seeds.
    pub(crate) fn new(seeds: Vec<String>, start: usize, backoff: Backoff) -> Router {
        debug_assert!(!seeds.is_empty());
        Router {
            seeds,
            seed_next: start,
            backoff,
            redirects_in_a_row: 0,
        }
    }

    /// The first address to try: the leader we last saw, else a seed.
    pub(crate) fn first(&mut self, leader: Option<String>) -> String {
        match leader {
            Some(address) => address,
            None => self.rotate(None),
        }
    }

    /// Decides what to do after `tried` failed with `failure`.
    ///
    /// A follower's redirect is followed at once (a few times in a row, then
    /// with backoff). UNAVAILABLE, timeouts, transport failures and a
    /// redirect without a leader rotate to another seed with backoff: the
    /// node is down, cut off, or the cluster is between leaders. Anything
    /// else came from a server that understood the request, so it is final.
    pub(crate) fn decide(&mut self, tried: &str, failure: &Failure) -> Decision {
        match classify(failure) {
            Class::Redirect(leader) if leader != tried => {
                let delay = if self.redirects_in_a_row < REDIRECTS_IMMEDIATE_MAX {
                    Duration::ZERO
                } else {
                    self.backoff.next_delay()
                };
                self.redirects_in_a_row += 1;
                Decision::Retry {
                    address: leader.to_string(),
                    delay,
                }
            }
            // A node naming itself as leader while refusing is confused
            // (stale view mid-election): treat it as having no leader.
            Class::Redirect(_) | Class::Rotate => {
                self.redirects_in_a_row = 0;
                Decision::Retry {
                    address: self.rotate(Some(tried)),
                    delay: self.backoff.next_delay(),
                }
            }
            Class::Final => Decision::Fail,
        }
    }

    /// The next seed in turn, skipping `avoid` when there is another choice.
    fn rotate(&mut self, avoid: Option<&str>) -> String {
        for _ in 0..self.seeds.len() {
            let seed = &self.seeds[self.seed_next % self.seeds.len()];
            self.seed_next = self.seed_next.wrapping_add(1);
            if Some(seed.as_str()) != avoid {
                return seed.clone();
            }
        }
        self.seeds[0].clone()
    }
}

enum Class<'a> {
    Redirect(&'a str),
    Rotate,
    Final,
}

fn classify(failure: &Failure) -> Class<'_> {
    match (failure.code, &failure.leader) {
        // Without the leader metadata, a precondition of the request
        // failed (a topic declared with other settings): final.
        (Code::FailedPrecondition, _) if !failure.not_leader => Class::Final,
        (Code::FailedPrecondition, Some(leader)) => Class::Redirect(leader),
        (Code::FailedPrecondition, None) => Class::Rotate,
        (Code::Unavailable | Code::DeadlineExceeded, _) => Class::Rotate,
        // Reset streams and expired local deadlines surface as these codes,
        // with the transport error as their source; so does a connection a
        // server closed with ENHANCE_YOUR_CALM (h2's guard against streams
        // reset in bulk, as a failover resets a whole window), as
        // RESOURCE_EXHAUSTED: unlike a full topic's, that one is retried.
        (
            Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
            | Code::ResourceExhausted,
            _,
        ) if failure.local => Class::Rotate,
        _ => Class::Final,
    }
}

/// True when a retry could change the outcome (see `Router::decide`).
pub(crate) fn is_retryable(failure: &Failure) -> bool {
    !matches!(classify(failure), Class::Final)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `leader`: what `x-raftmq-leader` said, if it was sent (empty: no
    /// leader known).
    fn failure(code: Code, leader: Option<&str>, local: bool) -> Failure {
        Failure {
            code,
            not_leader: leader.is_some(),
            leader: leader.filter(|l| !l.is_empty()).map(str::to_string),
            local,
        }
    }

    /// Feeds a sequence of (address tried, failure) to one router and
    /// compares the decisions, written `address@delay_ms` or `fail`.
    fn check(steps: &[(&str, Failure)], expected: &[&str]) {
        let seeds = ["a:1", "b:2", "c:3"].map(str::to_string).to_vec();
        let mut router = Router::new(
            seeds,
            0,
            Backoff::new(Duration::from_millis(50), Duration::from_millis(1000)),
        );
        let actual: Vec<String> = steps
            .iter()
            .map(|(tried, failure)| match router.decide(tried, failure) {
                Decision::Retry { address, delay } => {
                    format!("{address}@{}", delay.as_millis())
                }
                Decision::Fail => "fail".to_string(),
            })
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn redirects_are_followed_immediately_then_with_backoff() {
        let redirect = |to| failure(Code::FailedPrecondition, Some(to), false);
        check(
            &[
                ("a:1", redirect("b:2")),
                ("b:2", redirect("a:1")),
                ("a:1", redirect("b:2")),
                ("b:2", redirect("a:1")),
            ],
            &["b:2@0", "a:1@0", "b:2@50", "a:1@100"],
        );
    }

    #[test]
    fn unavailable_and_transport_failures_rotate_with_backoff() {
        check(
            &[
                ("a:1", failure(Code::Unavailable, None, true)),
                ("b:2", failure(Code::Unavailable, None, false)),
                ("c:3", failure(Code::DeadlineExceeded, None, false)),
                ("a:1", failure(Code::Cancelled, None, true)),
                ("b:2", failure(Code::Unknown, None, true)),
                ("c:3", failure(Code::ResourceExhausted, None, true)),
            ],
            &[
                "b:2@50", "c:3@100", "a:1@200", "b:2@400", "c:3@800", "a:1@1000",
            ],
        );
    }

    #[test]
    fn redirect_without_leader_or_to_itself_rotates() {
        check(
            &[
                ("a:1", failure(Code::FailedPrecondition, Some(""), false)),
                ("b:2", failure(Code::FailedPrecondition, Some("b:2"), false)),
            ],
            &["b:2@50", "c:3@100"],
        );
    }

    #[test]
    fn answers_from_a_server_are_final() {
        check(
            &[
                ("a:1", failure(Code::NotFound, None, false)),
                ("a:1", failure(Code::InvalidArgument, None, false)),
                ("a:1", failure(Code::AlreadyExists, None, false)),
                // A precondition of the request, not a refusal to lead.
                ("a:1", failure(Code::FailedPrecondition, None, false)),
                ("a:1", failure(Code::Unknown, None, false)),
                ("a:1", failure(Code::Internal, None, false)),
                // A full topic (back-pressure): the caller decides.
                ("a:1", failure(Code::ResourceExhausted, None, false)),
            ],
            &["fail", "fail", "fail", "fail", "fail", "fail", "fail"],
        );
    }

    #[test]
    fn a_rotation_resets_the_redirect_run() {
        let redirect = |to| failure(Code::FailedPrecondition, Some(to), false);
        check(
            &[
                ("a:1", redirect("b:2")),
                ("b:2", redirect("c:3")),
                ("c:3", failure(Code::Unavailable, None, true)),
                ("a:1", redirect("c:3")),
            ],
            &["b:2@0", "c:3@0", "a:1@50", "c:3@0"],
        );
    }

    #[test]
    fn the_leader_hint_is_read_from_metadata() {
        let mut status = tonic::Status::failed_precondition("not the leader");
        status.metadata_mut().insert(
            raftmq_proto::LEADER_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static("10.0.0.2:7002"),
        );
        assert_eq!(
            Failure::from_status(&status),
            failure(Code::FailedPrecondition, Some("10.0.0.2:7002"), false)
        );
    }
}
