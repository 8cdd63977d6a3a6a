//! Exponential retry delays.

use std::time::Duration;

/// Doubling delays from `initial` up to `max`.
///
/// No jitter: retries are already spread by each client's own timing, and a
/// deterministic sequence keeps the routing tests exact.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        debug_assert!(initial <= max);
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay to wait now; the following one will be twice as long.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts over at `initial`, after progress.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(50), ms(1000));
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(50));
    }
}
