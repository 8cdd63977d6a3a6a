//! The time a leader stamps on its entries. The state machine's time is
//! the highest stamp applied, so it never runs back; a leader whose wall
//! clock lags behind it (a clock set back, or behind the old leader's)
//! would leave it standing, and every ack timeout and delay with it, until
//! its clock caught up. So the stamp is the wall clock, or, while that
//! lags, the state machine's time run on by how long this node has seen it
//! stand: time moves at the rate it passes either way, and with a wall
//! clock in step (the usual case) the stamp is just the wall clock.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::clock::Clock;
use crate::raft::StateMachineStore;

pub struct LeaderClock {
    wall: Arc<dyn Clock>,
    machine: StateMachineStore,
    /// The state machine's time when this node last saw it change, and
    /// when that was.
    seen: Mutex<(u64, Instant)>,
}

impl LeaderClock {
    pub fn new(wall: Arc<dyn Clock>, machine: StateMachineStore) -> LeaderClock {
        LeaderClock {
            wall,
            machine,
            seen: Mutex::new((0, Instant::now())),
        }
    }
}

impl Clock for LeaderClock {
    fn now_ms(&self) -> u64 {
        let wall = self.wall.now_ms();
        let state = self.machine.read(|state| state.now_ms());
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.0 != state {
            *seen = (state, Instant::now());
        }
        let stood = u64::try_from(seen.1.elapsed().as_millis()).unwrap_or(u64::MAX);
        wall.max(state.saturating_add(stood))
    }
}
