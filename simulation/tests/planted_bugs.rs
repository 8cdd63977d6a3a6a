//! Every checker can fail: with a deliberate bug switched on, the simulation
//! finds a seed whose run reports the violation that checker exists for.
//! Needs `--features planted-bugs` (CI runs it so).
#![cfg(feature = "planted-bugs")]

use std::process::Command;

use serde_json::Value;

/// Seeds tried per bug before giving up.
const SEEDS_MAX: u64 = 30;

fn violations(bug: &str, seed: u64) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_raftmq-sim"))
        .args(["--seed", &seed.to_string(), "--once", "--plant", bug])
        .output()
        .expect("run raftmq-sim");
    assert!(
        output.status.success(),
        "{bug} seed {seed}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    report["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn check(bug: &str, expected: &str) {
    let caught = (1..=SEEDS_MAX).find_map(|seed| {
        let found = violations(bug, seed);
        found
            .iter()
            .any(|v| v.contains(expected))
            .then_some((seed, found))
    });
    match caught {
        Some((seed, found)) => eprintln!("{bug}: caught with seed {seed}: {found:?}"),
        None => panic!("{bug}: no seed in 1..={SEEDS_MAX} reported {expected:?}"),
    }
}

#[test]
fn an_ack_that_is_not_applied_is_caught_as_redelivery_after_ack() {
    check(
        "ack-drops-last",
        "delivered again after its ack was confirmed",
    );
}

#[test]
fn new_offsets_before_returned_ones_are_caught_as_key_reordering() {
    check("returned-last", "before unacked");
}

#[test]
fn one_more_than_prefetch_is_caught_by_the_credit_check() {
    check("prefetch-plus-one", "prefetch");
}

#[test]
fn a_replica_clock_in_apply_is_caught_as_replicas_disagreeing() {
    check("local-clock-in-apply", "disagree");
}

#[test]
fn a_skipped_message_is_caught_as_a_lost_confirmed_message() {
    check("skip-message", "not delivered");
}

#[test]
fn a_corrupted_payload_is_caught_as_a_phantom() {
    check("corrupt-payload", "phantom delivery");
}

#[test]
fn a_stored_repeat_is_caught_as_stored_twice() {
    check("store-repeats", "stored twice");
}

#[test]
fn elections_in_lockstep_are_caught_as_no_leader_after_healing() {
    check("election-lockstep", "no leader within");
}

#[test]
fn a_capped_log_read_is_caught_as_a_raft_core_stopped_after_a_restart() {
    check("read-cap", "raft core stopped");
}

#[test]
fn votes_read_as_granted_are_caught_as_two_leaders_in_a_term() {
    check("votes-always-granted", "two leaders in term");
}

#[test]
fn a_stale_snapshot_installed_is_caught_as_the_applied_index_going_back() {
    check("stale-snapshot-install", "applied index went back");
}

#[test]
fn a_batch_stored_last_first_is_caught_as_out_of_send_order() {
    check("batch-reversed", "stored out of send order");
}

#[test]
fn a_released_segment_still_holding_bodies_is_caught_as_a_follower_never_caught_up() {
    check("release-referenced", "has applied");
}

#[test]
fn relocated_bodies_shifted_by_one_are_caught_as_bodies_other_than_confirmed() {
    check("relocate-shifted", "confirmed as");
}

#[test]
fn a_delay_that_ends_early_is_caught_as_a_delivery_before_its_time() {
    check("delay-ends-early", "before its delay ended");
}

#[test]
fn an_exchange_that_routes_to_one_topic_is_caught_as_a_fanout_short_of_its_topics() {
    check("route-first-only", "not to both bound topics");
}
