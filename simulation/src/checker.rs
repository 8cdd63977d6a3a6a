//! Invariants judged from inside the replicas, after simulation steps:
//! at most one leader per term, applied index never going back within a
//! run of a node, no Raft core stopped under a serving node, each replica's
//! state bookkeeping, replicas agreeing on every (partition, offset) they
//! both hold, and after the heal every node back as a voter (DESIGN.md
//! invariants 3, 6, 8, 9).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use raftmq_node::machine::{BodyRef, Stored};
use raftmq_node::raft::Role;
use raftmq_node::Node;

use crate::workload::TOPIC;

/// Once healed, a cluster must have a leader this soon: several election
/// timeouts.
const ELECTION_AFTER_HEAL: Duration = Duration::from_secs(10);
/// Once healed, every node must be back this soon: time to restart and
/// catch up from the log or a snapshot.
const VOTERS_AFTER_HEAL: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct Checker {
    /// The leader seen for each term.
    leaders: BTreeMap<u64, u64>,
    /// The highest applied index seen per running node.
    applied: BTreeMap<u64, u64>,
    pub violations: Vec<String>,
}

impl Checker {
    /// Cheap checks, run after every step; answers new leaderships, for the
    /// trace.
    pub fn step(&mut self, nodes: &BTreeMap<u64, Node>) -> Vec<String> {
        let mut events = Vec::new();
        for (id, node) in nodes {
            let raft = node.raft_status();
            // A crashed node leaves the registry before the next step: any
            // node here is meant to be serving.
            if raft.role == Role::Shutdown {
                self.violations
                    .push(format!("node {id}: raft core stopped while serving"));
            }
            if raft.leader == Some(*id) && raft.role == Role::Leader {
                if !self.leaders.contains_key(&raft.term) {
                    events.push(format!("node {id} leads term {}", raft.term));
                }
                let leader = *self.leaders.entry(raft.term).or_insert(*id);
                if leader != *id {
                    self.violations.push(format!(
                        "two leaders in term {}: {leader} and {id}",
                        raft.term
                    ));
                }
            }
            // The state machine's own record, not openraft's: a replica
            // whose state is older than openraft believes serves old data.
            let applied = node.applied_index().unwrap_or(0);
            let seen = self.applied.entry(*id).or_insert(applied);
            if applied < *seen {
                self.violations.push(format!(
                    "node {id}: applied index went back from {seen} to {applied}"
                ));
            }
            *seen = applied.max(*seen);
        }
        events
    }

    /// One line on every running node's Raft state, for the trace.
    pub fn status(nodes: &BTreeMap<u64, Node>) -> String {
        let parts: Vec<String> = nodes
            .iter()
            .map(|(id, node)| {
                let raft = node.raft_status();
                format!(
                    "n{id} {:?} term {} leader {:?} log {} applied {}",
                    raft.role,
                    raft.term,
                    raft.leader,
                    raft.last_log_index.unwrap_or(0),
                    raft.applied.unwrap_or(0)
                )
            })
            .collect();
        format!("status: {}", parts.join(" | "))
    }

    /// The highest index applied on any of `nodes`.
    pub fn applied_max(nodes: &BTreeMap<u64, Node>) -> u64 {
        nodes
            .values()
            .filter_map(|node| node.raft_status().applied)
            .max()
            .unwrap_or(0)
    }

    fn has_leader(nodes: &BTreeMap<u64, Node>) -> bool {
        nodes
            .iter()
            .any(|(id, node)| node.raft_status().leader == Some(*id))
    }

    /// A crashed node starts over: its in-memory indexes may be lower.
    pub fn forget(&mut self, id: u64) {
        self.applied.remove(&id);
    }

    /// Heavier checks, run every few hundred steps and at the end.
    pub fn deep(&mut self, nodes: &BTreeMap<u64, Node>) {
        for (id, node) in nodes {
            if let Err(broken) = node.read_state(|state| state.check_invariants()) {
                self.violations.push(format!("node {id}: {broken}"));
            }
        }
        let ids: Vec<&u64> = nodes.keys().collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                if let Some(disagreement) = compare(&nodes[*a], &nodes[*b]) {
                    self.violations
                        .push(format!("nodes {a} and {b} disagree: {disagreement}"));
                }
            }
        }
    }
}

/// `record` with its body at `body`.
fn at(record: &Stored, body: BodyRef) -> Stored {
    let mut moved = record.clone();
    moved.set_body(body);
    moved
}

/// The first (partition, offset) two replicas both hold with different
/// messages. Records may name different places for one body (one replica
/// applied a relocation the other has not yet): then the bodies, read from
/// each replica, must be the same.
fn compare(a: &Node, b: &Node) -> Option<String> {
    let mut moved = Vec::new();
    let differing = a.read_state(|left| {
        b.read_state(|right| {
            (0u32..)
                .map_while(|p| Some((p, left.partition(TOPIC, p)?, right.partition(TOPIC, p)?)))
                .find_map(|(p, l, r)| {
                    let from = l.base.max(r.base);
                    let to = l.end().min(r.end());
                    (from..to).find_map(|offset| match (l.get(offset), r.get(offset)) {
                        (Some(l), Some(r)) if l != r && at(l, r.body()) == *r => {
                            moved.push((format!("{p}/{offset}"), l.body(), r.body()));
                            None
                        }
                        (l, r) if l != r => Some(format!("{p}/{offset}")),
                        _ => None,
                    })
                })
        })
    });
    differing.or_else(|| {
        moved
            .into_iter()
            .find_map(|(at, left, right)| match (a.body(left), b.body(right)) {
                (Ok(l), Ok(r)) if l == r => None,
                (l, r) => Some(format!("{at}: bodies {l:?} and {r:?}")),
            })
    })
}

/// The healed phase's recovery (DESIGN.md invariant 9): a leader within
/// `ELECTION_AFTER_HEAL`, and within `VOTERS_AFTER_HEAL` every node,
/// restarted ones included, a leader or follower that has applied all that
/// any node had applied at the heal. A restarted node is a follower before
/// its first apply; only that apply shows it came through its log tail.
pub struct Recovery {
    healed_at: Duration,
    ids: RangeInclusive<u64>,
    /// The highest index applied on any node at the heal.
    applied: u64,
    leader: bool,
    voters: bool,
}

impl Recovery {
    pub fn new(healed_at: Duration, ids: RangeInclusive<u64>, nodes: &BTreeMap<u64, Node>) -> Self {
        Recovery {
            healed_at,
            ids,
            applied: Checker::applied_max(nodes),
            leader: false,
            voters: false,
        }
    }

    pub fn done(&self) -> bool {
        self.leader && self.voters
    }

    /// Notes what `nodes` reached by `at`; answers a violation once a bound
    /// has passed unmet.
    pub fn step(&mut self, at: Duration, nodes: &BTreeMap<u64, Node>) -> Option<String> {
        let since = at.saturating_sub(self.healed_at);
        self.leader = self.leader || Checker::has_leader(nodes);
        if !self.leader && since >= ELECTION_AFTER_HEAL {
            return Some(format!(
                "liveness: no leader within {ELECTION_AFTER_HEAL:?} of healing"
            ));
        }
        if !self.voters {
            let behind = self
                .ids
                .clone()
                .find_map(|id| behind(id, nodes.get(&id), self.applied));
            self.voters = behind.is_none();
            if let Some(why) = behind.filter(|_| since >= VOTERS_AFTER_HEAL) {
                return Some(format!(
                    "liveness: {VOTERS_AFTER_HEAL:?} after healing, {why}"
                ));
            }
        }
        None
    }
}

/// Why node `id` is not back as a voter that has applied `applied`; None
/// once it is.
pub fn behind(id: u64, node: Option<&Node>, applied: u64) -> Option<String> {
    let Some(raft) = node.map(Node::raft_status) else {
        return Some(format!("node {id} is not running"));
    };
    if !matches!(raft.role, Role::Leader | Role::Follower) {
        return Some(format!("node {id} is a {}", raft.role.name()));
    }
    let reached = raft.applied.unwrap_or(0);
    (reached < applied).then(|| format!("node {id} has applied {reached} of {applied}"))
}
