//! Network faults above TCP: turmoil's TCP never duplicates or reorders, so
//! the simulation duplicates some Raft RPCs, delays others, and sends stale
//! copies that arrive after newer messages (reordering), through the node's
//! `RpcFaults` seam. Only during the chaos phase.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use raftmq_node::transport::{RpcFate, RpcFaults};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub struct SimRpcFaults {
    rng: Mutex<StdRng>,
    /// Chance per RPC, in thousandths.
    per_mille: u32,
    active: AtomicBool,
    injected: AtomicU64,
}

impl SimRpcFaults {
    pub fn new(seed: u64, per_mille: u32) -> Self {
        SimRpcFaults {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            per_mille,
            active: AtomicBool::new(true),
            injected: AtomicU64::new(0),
        }
    }

    /// Ends the faults (the heal).
    pub fn stop(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

impl RpcFaults for SimRpcFaults {
    fn fate(&self, _target: u64) -> RpcFate {
        if !self.active.load(Ordering::Relaxed) {
            return RpcFate::Send;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        if rng.gen_range(0..1000) >= self.per_mille {
            return RpcFate::Send;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        match rng.gen_range(0..3) {
            0 => RpcFate::Duplicate,
            1 => RpcFate::StaleCopy(Duration::from_millis(rng.gen_range(5..300))),
            _ => RpcFate::Delay(Duration::from_millis(rng.gen_range(1..100))),
        }
    }
}
