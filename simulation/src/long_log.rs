//! Long-log seeds: under the production snapshot interval, bulk traffic
//! grows the log, with no fault until a follower has appended
//! `REAPPLY_MIN` entries since its records were last made durable. That
//! follower then crashes losing every unflushed record, so that once
//! restarted it has more to apply in one read than a log read once
//! returned (planted bug `read-cap`). Other faults wait until it is back:
//! after a change of leader, the new leader would probe its log by halving
//! and it would apply its tail in steps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftmq_node::raft::Role;
use raftmq_node::Node;
use turmoil::Sim;

use crate::checker::{behind, Checker};
use crate::disk::Unflushed;
use crate::faults::{Faults, Targets};

/// Log entries the crash waits for: more than the 4,096 one log read once
/// returned, plus room for entries not yet committed when the node crashed
/// (the proposer keeps at most 64 in flight).
const REAPPLY_MIN: u64 = 4_096 + 128;

pub struct LongLog {
    nodes: u64,
    /// The first qualifying follower counting from this node crashes.
    from: u64,
    /// Set at the crash: the bulk traffic ends.
    bulk_done: Arc<AtomicBool>,
    stage: Stage,
}

enum Stage {
    Loading,
    /// `node` crashed; it is back once it has applied `applied`, what was
    /// applied anywhere when it crashed.
    Restarting {
        node: u64,
        applied: u64,
    },
    Over,
}

impl LongLog {
    pub fn new(nodes: u64, from: u64, bulk_done: Arc<AtomicBool>) -> Self {
        LongLog {
            nodes,
            from,
            bulk_done,
            stage: Stage::Loading,
        }
    }

    /// Whether other faults must wait.
    pub fn holding(&self) -> bool {
        !matches!(self.stage, Stage::Over)
    }

    /// One step of the chaos phase: the crash once it is due, and the end
    /// of the hold once its node is back. Answers what happened, for the
    /// trace; the crashed node is named in `crashed`.
    pub fn step(
        &mut self,
        sim: &mut Sim<'_>,
        now: Duration,
        faults: &mut Faults,
        targets: &Targets<'_>,
        nodes: &BTreeMap<u64, Node>,
        crashed: &mut Vec<u64>,
    ) -> Vec<String> {
        match self.stage {
            Stage::Loading => match self.due(targets, nodes) {
                Some(node) => {
                    self.bulk_done.store(true, Ordering::Relaxed);
                    let applied = Checker::applied_max(nodes);
                    self.stage = Stage::Restarting { node, applied };
                    let crash = faults.crash_now(sim, now, node, Unflushed::Lost, targets, crashed);
                    vec![Checker::status(nodes), crash]
                }
                None => Vec::new(),
            },
            Stage::Restarting { node, applied } => {
                if behind(node, nodes.get(&node), applied).is_some() {
                    return Vec::new();
                }
                self.stage = Stage::Over;
                vec![format!("node {node} is back, faults may come")]
            }
            Stage::Over => Vec::new(),
        }
    }

    /// The node to crash, once there is one: the first follower, counting
    /// from `from`, that has appended `REAPPLY_MIN` entries since its
    /// records were last made durable. A follower, because a restarted
    /// leader resumes leading and, probing each follower's log by halving,
    /// commits its tail in steps.
    fn due(&self, targets: &Targets<'_>, nodes: &BTreeMap<u64, Node>) -> Option<u64> {
        (0..self.nodes)
            .map(|k| (self.from - 1 + k) % self.nodes + 1)
            .find(|id| {
                nodes
                    .get(id)
                    .is_some_and(|node| node.raft_status().role == Role::Follower)
                    && targets.disks[id].appended_since_flush() >= REAPPLY_MIN
            })
    }
}
