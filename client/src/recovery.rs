//! The budget of a stream's recovery: how many restarts, and how much time,
//! a producer or consumer may spend re-attaching before it gives up.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::ClientError;

/// Counts consecutive stream restarts that made no progress.
///
/// An episode starts at the first break after progress and ends at the next
/// progress (a confirm, a delivery, or a stream that stayed up). Within an
/// episode the restarts are bounded in number (`restarts_max`) and in time
/// (`deadline`); the first restart is immediate (a leader change is the
/// usual cause), later ones back off.
#[derive(Debug)]
pub(crate) struct Recovery {
    restarts: u32,
    restarts_max: u32,
    deadline: Duration,
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
    pub(crate) fn new(restarts_max: u32, deadline: Duration, backoff: Backoff) -> Recovery {
        Recovery {
            restarts: 0,
            restarts_max,
            deadline,
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

    /// Records a break at `now` and says when to restart, or that the
    /// episode's budget is spent.
    pub(crate) fn on_break(&mut self, now: Instant) -> Result<Restart, ClientError> {
        let started = *self.started.get_or_insert(now);
        let deadline = started + self.deadline;
        let elapsed = now.saturating_duration_since(started);
        if self.restarts >= self.restarts_max || now >= deadline {
            return Err(ClientError::StreamBroken {
                restarts: self.restarts,
                elapsed,
            });
        }
        let delay = if self.restarts == 0 {
            Duration::ZERO
        } else {
            self.backoff.next_delay()
        };
        self.restarts += 1;
        Ok(Restart {
            not_before: now + delay,
            deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovery() -> Recovery {
        let ms = Duration::from_millis;
        Recovery::new(3, Duration::from_secs(10), Backoff::new(ms(50), ms(1000)))
    }

    /// Feeds breaks (`b` at a time in ms from the start) and progress (`p`)
    /// and compares the answers: `delay_ms` per restart, `x` when exhausted.
    fn check(events: &[(char, u64)], expected: &[&str]) {
        let start = Instant::now();
        let mut recovery = recovery();
        let mut actual = Vec::new();
        for &(kind, at_ms) in events {
            let now = start + Duration::from_millis(at_ms);
            match kind {
                'p' => recovery.progress(),
                _ => actual.push(match recovery.on_break(now) {
                    Ok(restart) => (restart.not_before - now).as_millis().to_string(),
                    Err(_) => "x".to_string(),
                }),
            }
        }
        assert_eq!(actual, expected);
    }

    #[test]
    fn restarts_are_bounded_in_count() {
        check(
            &[('b', 0), ('b', 10), ('b', 20), ('b', 30)],
            &["0", "50", "100", "x"],
        );
    }

    #[test]
    fn restarts_are_bounded_in_time() {
        check(&[('b', 0), ('b', 10_000)], &["0", "x"]);
    }

    #[test]
    fn progress_starts_a_new_episode() {
        check(
            &[
                ('b', 0),
                ('b', 10),
                ('b', 20),
                ('p', 25),
                ('b', 30),
                ('b', 40),
            ],
            &["0", "50", "100", "0", "50"],
        );
    }
}
