//! The fault injector: from the run's seeded RNG it crashes and restarts
//! nodes (losing unflushed writes), isolates a node (minority partition),
//! cuts one link (a bridge: the third node still sees both), holds links
//! (delays, then releases), raises message latency, and jumps a node's wall
//! clock; the driver may also crash a node of its choosing. At the end of
//! the chaos phase it heals everything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use turmoil::Sim;

use crate::clock::SimClock;
use crate::disk::{SimDisk, Unflushed};

pub fn host(id: u64) -> String {
    format!("node{id}")
}

/// Something to undo later.
#[derive(Debug)]
enum Undo {
    Restart(u64),
    Repair(u64, u64),
    Release(u64, u64),
    Latency,
}

pub struct Faults {
    rng: StdRng,
    nodes: u64,
    /// Chance per simulated millisecond of a new fault.
    per_ms: f64,
    pending: Vec<(Duration, Undo)>,
    pub injected: u64,
}

/// What the injector may touch.
pub struct Targets<'a> {
    pub disks: &'a BTreeMap<u64, Arc<SimDisk>>,
    pub clocks: &'a BTreeMap<u64, SimClock>,
}

impl Faults {
    pub fn new(rng: StdRng, nodes: u64, per_ms: f64) -> Self {
        Faults {
            rng,
            nodes,
            per_ms,
            pending: Vec::new(),
            injected: 0,
        }
    }

    fn down(&self) -> Option<u64> {
        self.pending.iter().find_map(|(_, undo)| match undo {
            Undo::Restart(id) => Some(*id),
            _ => None,
        })
    }

    /// One simulated millisecond of chaos: every undo that is due and,
    /// if `inject`, maybe a new fault. Answers what happened, for the
    /// trace; crashed nodes are named in `crashed`.
    pub fn tick(
        &mut self,
        sim: &mut Sim<'_>,
        now: Duration,
        targets: &Targets<'_>,
        crashed: &mut Vec<u64>,
        inject: bool,
    ) -> Vec<String> {
        let mut events = self.undo_due(sim, now);
        if inject && self.rng.gen_bool(self.per_ms) {
            events.push(self.inject(sim, now, targets, crashed));
            self.injected += 1;
        }
        events
    }

    fn inject(
        &mut self,
        sim: &mut Sim<'_>,
        now: Duration,
        targets: &Targets<'_>,
        crashed: &mut Vec<u64>,
    ) -> String {
        let node = self.rng.gen_range(1..=self.nodes);
        let other = (node % self.nodes) + 1;
        let lasting = self.lasting();
        match self.rng.gen_range(0..6) {
            0 if self.down().is_none() => {
                let keep = Unflushed::RandomPrefix;
                self.crash(sim, node, keep, now + lasting, targets, crashed)
            }
            1 => {
                for peer in (1..=self.nodes).filter(|p| *p != node) {
                    sim.partition(host(node), host(peer));
                    self.pending.push((now + lasting, Undo::Repair(node, peer)));
                }
                format!("isolate node {node}")
            }
            2 => {
                sim.partition(host(node), host(other));
                self.pending
                    .push((now + lasting, Undo::Repair(node, other)));
                format!("cut {node}-{other}")
            }
            3 => {
                sim.hold(host(node), host(other));
                let short = lasting / 4;
                self.pending.push((now + short, Undo::Release(node, other)));
                format!("hold {node}-{other} for {short:?}")
            }
            4 => {
                let latency = Duration::from_millis(self.rng.gen_range(5..80));
                sim.set_max_message_latency(latency);
                self.pending.push((now + lasting, Undo::Latency));
                format!("latency up to {latency:?}")
            }
            _ => {
                let jump = self.rng.gen_range(-30_000..30_000);
                targets.clocks[&node].jump(jump);
                format!("clock of node {node} jumps {jump} ms")
            }
        }
    }

    /// Crashes `node` at the driver's request, keeping what `keep` says of
    /// its unflushed records, to restart it as a random crash would be.
    pub fn crash_now(
        &mut self,
        sim: &mut Sim<'_>,
        now: Duration,
        node: u64,
        keep: Unflushed,
        targets: &Targets<'_>,
        crashed: &mut Vec<u64>,
    ) -> String {
        self.injected += 1;
        let restart_at = now + self.lasting();
        self.crash(sim, node, keep, restart_at, targets, crashed)
    }

    /// How long a fault lasts.
    fn lasting(&mut self) -> Duration {
        Duration::from_millis(self.rng.gen_range(200..4_000))
    }

    /// Crashes `node`, keeping what `keep` says of its unflushed records,
    /// to restart it at `restart_at`.
    fn crash(
        &mut self,
        sim: &mut Sim<'_>,
        node: u64,
        keep: Unflushed,
        restart_at: Duration,
        targets: &Targets<'_>,
        crashed: &mut Vec<u64>,
    ) -> String {
        sim.crash(host(node));
        let disk = &targets.disks[&node];
        let appended = disk.appended_since_flush();
        let lost = disk.crash(keep, &mut self.rng);
        crashed.push(node);
        self.pending.push((restart_at, Undo::Restart(node)));
        format!(
            "crash node {node}, {appended} log entries since its records were durable, \
             {lost} unflushed writes lost"
        )
    }

    fn undo_due(&mut self, sim: &mut Sim<'_>, now: Duration) -> Vec<String> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.pending = later;
        due.into_iter()
            .map(|(_, undo)| Self::undo(sim, undo))
            .collect()
    }

    fn undo(sim: &mut Sim<'_>, undo: Undo) -> String {
        match undo {
            Undo::Restart(id) => {
                sim.bounce(host(id));
                format!("restart node {id}")
            }
            Undo::Repair(a, b) => {
                sim.repair(host(a), host(b));
                format!("repair {a}-{b}")
            }
            Undo::Release(a, b) => {
                sim.release(host(a), host(b));
                format!("release {a}-{b}")
            }
            Undo::Latency => {
                sim.set_max_message_latency(Duration::from_millis(crate::run::LATENCY_MAX_MS));
                "latency back to normal".to_string()
            }
        }
    }

    /// Ends the chaos: undoes every fault now.
    pub fn heal(&mut self, sim: &mut Sim<'_>) -> Vec<String> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(_, undo)| Self::undo(sim, undo))
            .collect()
    }
}
