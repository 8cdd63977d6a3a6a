//! One seeded run: three real nodes and the workload under turmoil, a chaos
//! phase with faults and checks after every step, then a healed phase in
//! which every node must come back and every confirmed message must be
//! delivered.
//!
//! One seed in `LONG_LOG_ONE_IN` runs with the production snapshot interval
//! and a long log (`long_log`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftmq_node::transport::RpcFaults;
use raftmq_node::{Node, NodeConfig, NodeError, Seams};
use raftmq_proto::v1::SubscriptionMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::{Checker, Recovery};
use crate::clock::SimClock;
use crate::disk::SimDisk;
use crate::faults::{host, Faults, Targets};
use crate::long_log::LongLog;
use crate::oracle::Oracle;
use crate::rpc_faults::SimRpcFaults;
use crate::trace::Trace;
use crate::workload::{self, Workload};

const NODES: u64 = 3;
const PORT: u16 = 7001;
/// Normal one-way message latency bound.
pub const LATENCY_MAX_MS: u64 = 5;
/// Steps between the heavier replica checks.
const DEEP_CHECK_EVERY: u64 = 250;
/// Steps between status lines in the trace.
const STATUS_EVERY: u64 = 5_000;
/// Time allowed after the heal for every confirmed message to arrive.
const LIVENESS: Duration = Duration::from_secs(60);
/// One seed in this many has a long log under the production snapshot
/// interval.
const LONG_LOG_ONE_IN: u32 = 4;
/// Added to a long-log seed's chaos phase for the bulk traffic (about one
/// entry per millisecond) before the held crash.
const LONG_LOG_LOAD: Duration = Duration::from_secs(8);

/// Everything a run reports.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub trace_hash: u64,
    pub events: u64,
    pub simulated: Duration,
    pub wall: Duration,
    pub faults: u64,
    pub confirmed: usize,
    pub delivered: usize,
    pub violations: Vec<String>,
    pub recent: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

type Registry = Arc<Mutex<BTreeMap<u64, Node>>>;

fn running(registry: &Registry) -> BTreeMap<u64, Node> {
    registry.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Snapshot intervals: small ones, so runs snapshot, purge the log and send
/// snapshots to followers that fell behind the purge point; on long-log
/// seeds the production default.
fn snapshot_every(long_log: bool, rng: &mut StdRng) -> u64 {
    if long_log {
        NodeConfig::new(0, BTreeMap::new()).snapshot_every
    } else {
        [16, 64, 256][rng.gen_range(0..3)]
    }
}

/// One node's process: it starts, registers with the checkers and serves
/// until crashed. An error (its Raft core stopped, say) ends it, as it ends
/// the real process; turmoil then stops the run with that error.
async fn node_process(
    config: NodeConfig,
    seams: Seams,
    registry: Registry,
) -> Result<(), NodeError> {
    let id = config.id;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let node = Node::start(config, seams).await?;
    registry
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, node.clone());
    node.serve(crate::net::incoming(listener), std::future::pending())
        .await
}

pub fn run(seed: u64, trace: Trace) -> Report {
    let started = Instant::now();
    // One seed sets everything: raft's election jitter, turmoil's network,
    // the workload's shape and the faults.
    raftmq_node::raft::seed_thread_rng(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut features = StdRng::seed_from_u64(seed ^ 0xfea7);
    let long = rng.gen_ratio(1, LONG_LOG_ONE_IN);
    let mut chaos = Duration::from_secs(rng.gen_range(5..20));
    if long {
        chaos += LONG_LOG_LOAD;
    }
    let workload = Workload {
        seed,
        nodes: (1..=NODES)
            .map(|id| format!("{}:{PORT}", host(id)))
            .collect(),
        partitions: rng.gen_range(1..=4),
        producers: rng.gen_range(1..=3),
        keys_per_producer: rng.gen_range(1..=4),
        produce_until: chaos,
        messages_per_producer_max: rng.gen_range(100..400),
        batch_max: rng.gen_range(1..=8),
        prefetch: rng.gen_range(1..=16),
        consumer_crash_per_mille: rng.gen_range(0..30),
        // Half the seeds never nack.
        nack_per_mille: [0, rng.gen_range(1..40)][rng.gen_range(0..2)],
        consumers: rng.gen_range(1..=3),
        mode: [
            SubscriptionMode::Failover,
            SubscriptionMode::Shared,
            SubscriptionMode::KeyShared,
        ][rng.gen_range(0..3)],
        ack_timeout_ms: [0, 0, 1_000, 3_000][rng.gen_range(0..4)],
        deadline: chaos + LIVENESS,
        bulk_done: long.then(Arc::default),
        // Drawn apart, so that the draws above stay what they were.
        max_priority: [0, 0, 3][features.gen_range(0..3)],
        delay_per_mille: [0, features.gen_range(10..200)][features.gen_range(0..2)],
    };
    let faults_per_ms = rng.gen_range(0.0002..0.002);
    let snapshot_every = snapshot_every(long, &mut rng);
    // Half the seeds keep no body in memory, so every delivery reads its
    // body from the simulated disk; the others run the default cache.
    let body_cache_bytes = if rng.gen_bool(0.5) {
        0
    } else {
        NodeConfig::new(0, BTreeMap::new()).body_cache_bytes
    };
    // A third of the seeds compact at the default; the others as soon as a
    // few kilobytes of log are pinned, so relocations happen in every run.
    let compact_frees_bytes = [
        NodeConfig::new(0, BTreeMap::new()).compact_frees_bytes,
        4 * 1024,
        32 * 1024,
    ][rng.gen_range(0..3)];
    let mut long_log = workload
        .bulk_done
        .clone()
        .map(|done| LongLog::new(NODES, rng.gen_range(1..=NODES), done));
    let rpc_faults = Arc::new(SimRpcFaults::new(rng.gen(), rng.gen_range(5..50)));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(chaos + LIVENESS + Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(LATENCY_MAX_MS))
        .build();

    let oracle = Oracle::default();
    let registry: Registry = Arc::default();
    let disks: BTreeMap<u64, Arc<SimDisk>> = (1..=NODES).map(|id| (id, Arc::default())).collect();
    let clocks: BTreeMap<u64, SimClock> = (1..=NODES).map(|id| (id, SimClock::default())).collect();
    let boots = Arc::new(AtomicU64::new(seed.wrapping_mul(1_000)));
    let peers: BTreeMap<u64, String> = (1..=NODES)
        .map(|id| (id, format!("{}:{PORT}", host(id))))
        .collect();
    for id in 1..=NODES {
        let (disk, clock, registry, boots, peers, rpc_faults) = (
            disks[&id].clone(),
            clocks[&id].clone(),
            registry.clone(),
            boots.clone(),
            peers.clone(),
            rpc_faults.clone(),
        );
        sim.host(host(id), move || {
            let seams = Seams {
                disk: disk.clone(),
                connector: Arc::new(crate::net::SimConnector),
                clock: Arc::new(clock.clone()),
                boot_id: boots.fetch_add(1, Ordering::Relaxed),
                rpc_faults: Some(rpc_faults.clone() as Arc<dyn RpcFaults>),
            };
            let config = NodeConfig {
                snapshot_every,
                body_cache_bytes,
                compact_frees_bytes,
                ..NodeConfig::new(id, peers.clone())
            };
            let registry = registry.clone();
            async move {
                node_process(config, seams, registry)
                    .await
                    .map_err(|e| format!("node {id} exited: {e}").into())
            }
        });
    }
    sim.client(
        "workload",
        workload::run(workload, oracle.clone(), trace.clone()),
    );

    let mut faults = Faults::new(StdRng::seed_from_u64(rng.gen()), NODES, faults_per_ms);
    let mut checker = Checker::default();
    let mut recovery: Option<Recovery> = None;
    let mut violations = Vec::new();
    let targets = Targets {
        disks: &disks,
        clocks: &clocks,
    };
    // Bounded: turmoil stops the run at its simulation duration.
    for step in 0u64.. {
        let finished = match sim.step() {
            Ok(finished) => finished,
            Err(e) => {
                violations.push(format!("simulation error: {e}"));
                break;
            }
        };
        let at = sim.elapsed();
        for event in checker.step(&running(&registry)) {
            trace.record(at, event);
        }
        if step.is_multiple_of(STATUS_EVERY) {
            trace.record(at, Checker::status(&running(&registry)));
        }
        if step.is_multiple_of(DEEP_CHECK_EVERY) {
            checker.deep(&running(&registry));
        }
        // The chaos ends early once the workload is done: the healed
        // phase still has to see every node back.
        if at < chaos && !finished {
            let mut crashed = Vec::new();
            let mut events = Vec::new();
            let holding = long_log.as_mut().filter(|long_log| long_log.holding());
            let inject = holding.is_none();
            if let Some(long_log) = holding {
                let nodes = running(&registry);
                events = long_log.step(&mut sim, at, &mut faults, &targets, &nodes, &mut crashed);
            }
            events.extend(faults.tick(&mut sim, at, &targets, &mut crashed, inject));
            for event in events {
                trace.record(at, event);
            }
            for id in crashed {
                registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                checker.forget(id);
            }
        } else if recovery.is_none() {
            rpc_faults.stop();
            for event in faults.heal(&mut sim) {
                trace.record(at, event);
            }
            trace.record(at, "healed");
            recovery = Some(Recovery::new(at, 1..=NODES, &running(&registry)));
        }
        if let Some(recovery) = &mut recovery {
            if let Some(violation) = recovery.step(at, &running(&registry)) {
                violations.push(violation);
                break;
            }
        }
        if (finished && recovery.as_ref().is_some_and(Recovery::done))
            || !violations.is_empty()
            || !checker.violations.is_empty()
            || !oracle.violations().is_empty()
        {
            break;
        }
    }
    checker.deep(&running(&registry));
    let stopped_early =
        !violations.is_empty() || !checker.violations.is_empty() || !oracle.violations().is_empty();
    let undelivered = oracle.undelivered();
    // Liveness is judged only on a run that went to its end.
    if !undelivered.is_empty() && !stopped_early {
        violations.push(format!(
            "liveness: {} confirmed messages not delivered within {LIVENESS:?} of healing, e.g. {:?}",
            undelivered.len(),
            &undelivered[..undelivered.len().min(5)]
        ));
    }
    violations.extend(checker.violations);
    violations.extend(oracle.violations());
    let mut seen = std::collections::BTreeSet::new();
    violations.retain(|v| seen.insert(v.clone()));
    Report {
        seed,
        trace_hash: trace.hash(),
        events: trace.events(),
        simulated: sim.elapsed(),
        wall: started.elapsed(),
        faults: faults.injected + rpc_faults.injected(),
        confirmed: oracle.confirmed_count(),
        delivered: oracle.delivered_count(),
        violations,
        recent: trace.recent(),
    }
}
