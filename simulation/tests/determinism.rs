//! Same seed, same run: each seed runs twice, each time in a fresh
//! `raftmq-sim` process, and the trace hashes must match.

use std::process::Command;

use serde_json::Value;

fn run_once(seed: u64) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_raftmq-sim"))
        .args(["--seed", &seed.to_string(), "--once"])
        .output()
        .expect("run raftmq-sim");
    assert!(
        output.status.success(),
        "seed {seed}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON report")
}

#[test]
fn the_same_seed_gives_the_same_trace_and_different_seeds_differ() {
    let mut hashes = Vec::new();
    for seed in [1, 7, 42, 99, 314, 1234, 2026, 4096, 9999, 65_535] {
        let (first, second) = (run_once(seed), run_once(seed));
        assert_eq!(first["trace_hash"], second["trace_hash"], "seed {seed}");
        assert_eq!(first["events"], second["events"], "seed {seed}");
        assert_eq!(
            first["passed"],
            Value::Bool(true),
            "seed {seed}: {}",
            first["violations"]
        );
        assert!(
            first["confirmed"].as_u64().unwrap_or(0) > 0,
            "seed {seed} confirmed nothing"
        );
        hashes.push(first["trace_hash"].as_str().unwrap_or_default().to_string());
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 10, "different seeds must give different runs");
}
