//! The budget of a stream's recovery: how long a producer or consumer may
//! spend re-attaching before it gives up, and when each attempt starts.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::ClientError;

/// Times consecutive stream restarts that made no progress.
///
/// An episode starts at the first break after progress and ends at the next
/// progress (a confirm, a delivery, or a stream that stayed up). Within an
/// episode the restarts are bounded in time by `give_up_after` (`None`:
/// never, for a consumer that must outlive a whole-cluster outage); the
/// first restart is immediate (a leader change is the usual cause), later
/// ones back off up to the backoff's ceiling. Each restart may look for a
/// leader for `attempt_max`, so a long outage costs one attempt (and one
/// log line) per `attempt_max`.
#[derive(Debug)]
pub(crate) struct Recovery {
    restarts: u32,
    give_up_after: Option<Duration>,
    attempt_max: Duration,
    started: Option<Instant>,
    backoff: Backoff,
}

/// What to do about a break. Instants, not delays, so a restart whose wait
/// was cancelled can be resumed as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restart {
    /// Re-attach no sooner.
    pub not_before: Instant,
    /// Re-attaching (finding the leader included) must finish by then.
    pub deadline: Instant,
}

impl Recovery {
    pub(crate) fn new(
        give_up_after: Option<Duration>,
        attempt_max: Duration,
        backoff: Backoff,
    ) -> Recovery {
        Recovery {
            restarts: 0,
            give_up_after,
            attempt_max,
            started: None,
            backoff,
        }
    }

    /// The stream did useful work: the next break starts a fresh episode.
    pub(crate) fn progress(&mut self) {
        self.restarts = 0;
        self.started = None;
        self.backoff.reset();
    }

    /// How long the current episode has lasted at `now`.
    pub(crate) fn elapsed(&self, now: Instant) -> Duration {
        self.started.map_or(Duration::ZERO, |started| {
            now.saturating_duration_since(started)
        })
    }

    /// Records a break at `now` and says when to restart, or that the
    /// episode's budget is spent.
    pub(crate) fn on_break(&mut self, now: Instant) -> Result<Restart, ClientError> {
        let started = *self.started.get_or_insert(now);
        let give_up_at = self.give_up_after.map(|limit| started + limit);
        if give_up_at.is_some_and(|at| now >= at) {
            return Err(ClientError::StreamBroken {
                restarts: self.restarts,
                elapsed: now.saturating_duration_since(started),
            });
        }
        let delay = if self.restarts == 0 {
            Duration::ZERO
        } else {
            self.backoff.next_delay()
        };
        self.restarts = self.restarts.saturating_add(1);
        let not_before = now + delay;
        let attempt_end = not_before + self.attempt_max;
        Ok(Restart {
            not_before,
            deadline: give_up_at.map_or(attempt_end, |at| at.min(attempt_end)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds breaks (`b` at a time in ms from the start) and progress (`p`)
    /// and compares the answers: `delay_ms/deadline_ms` per restart (the
    /// deadline from the start), `x` when the budget is spent.
    fn check(give_up_after_ms: Option<u64>, events: &[(char, u64)], expected: &[&str]) {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut recovery = Recovery::new(
            give_up_after_ms.map(ms),
            ms(5_000),
            Backoff::new(ms(50), ms(1000)),
        );
        let mut actual = Vec::new();
        for &(kind, at_ms) in events {
            let now = start + ms(at_ms);
            match kind {
                'p' => recovery.progress(),
                _ => actual.push(match recovery.on_break(now) {
                    Ok(restart) => format!(
                        "{}/{}",
                        (restart.not_before - now).as_millis(),
                        (restart.deadline - start).as_millis()
                    ),
                    Err(_) => "x".to_string(),
                }),
            }
        }
        assert_eq!(actual, expected);
    }

    #[test]
    fn restarts_back_off_and_are_bounded_in_time() {
        check(
            Some(10_000),
            &[('b', 0), ('b', 10), ('b', 20), ('b', 9_000), ('b', 10_000)],
            &["0/5000", "50/5060", "100/5120", "200/10000", "x"],
        );
    }

    #[test]
    fn without_a_limit_restarts_go_on_at_the_backoff_ceiling() {
        let breaks: Vec<(char, u64)> = (0..8).map(|i| ('b', i * 60_000)).collect();
        check(
            None,
            &breaks,
            &[
                "0/5000",
                "50/65050",
                "100/125100",
                "200/185200",
                "400/245400",
                "800/305800",
                "1000/366000",
                "1000/426000",
            ],
        );
    }

    #[test]
    fn progress_starts_a_new_episode() {
        check(
            Some(10_000),
            &[
                ('b', 0),
                ('b', 10),
                ('b', 9_990),
                ('p', 9_995),
                ('b', 10_000),
                ('b', 10_010),
            ],
            &["0/5000", "50/5060", "100/10000", "0/15000", "50/15060"],
        );
    }
}
