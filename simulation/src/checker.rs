//! Invariants judged from inside the replicas, after simulation steps:
//! at most one leader per term, applied index never going back within a
//! run of a node, each replica's state bookkeeping, and replicas agreeing on
//! every (partition, offset) they both hold (DESIGN.md invariants 3, 6, 8).

use std::collections::BTreeMap;

use raftmq_node::raft::Role;
use raftmq_node::Node;

use crate::workload::TOPIC;

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
            let applied = raft.applied.unwrap_or(0);
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

    pub fn has_leader(nodes: &BTreeMap<u64, Node>) -> bool {
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

/// The first (partition, offset) two replicas both hold with different
/// messages.
fn compare(a: &Node, b: &Node) -> Option<String> {
    a.read_state(|left| {
        b.read_state(|right| {
            (0u32..)
                .map_while(|p| Some((p, left.partition(TOPIC, p)?, right.partition(TOPIC, p)?)))
                .find_map(|(p, l, r)| {
                    let from = l.base.max(r.base);
                    let to = l.end().min(r.end());
                    (from..to)
                        .find(|offset| l.get(*offset) != r.get(*offset))
                        .map(|offset| format!("{p}/{offset}"))
                })
        })
    })
}
