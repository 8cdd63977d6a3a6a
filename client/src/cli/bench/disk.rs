//! The disk's own limits, measured the way the log uses it: small appends
//! each followed by fdatasync, and large synced writes.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const SMALL_BYTES: usize = 1024;
const SMALL_SECONDS: Duration = Duration::from_secs(2);
const SMALL_SYNCS_MAX: u64 = 100_000;
const BIG_BYTES: usize = 4 * 1024 * 1024;
const BIG_WRITES: u64 = 32;

pub(crate) fn run(dir: &Path) -> anyhow::Result<Value> {
    super::progress(format!("disk limits in {}", dir.display()));
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("raftmq-bench-disk-{}", std::process::id()));
    let measured = measure(&path);
    let _ = fs::remove_file(&path);
    measured
}

fn measure(path: &Path) -> anyhow::Result<Value> {
    let mut file = File::create(path)?;
    let small = vec![0x5a; SMALL_BYTES];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < SMALL_SECONDS && syncs < SMALL_SYNCS_MAX {
        file.write_all(&small)?;
        file.sync_data()?;
        syncs += 1;
    }
    let small_per_s = syncs as f64 / started.elapsed().as_secs_f64();

    let big = vec![0xa5; BIG_BYTES];
    let started = Instant::now();
    for _ in 0..BIG_WRITES {
        file.write_all(&big)?;
        file.sync_data()?;
    }
    let big_mb_per_s =
        (BIG_WRITES * BIG_BYTES as u64) as f64 / 1e6 / started.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "disk",
        "small_append_bytes": SMALL_BYTES,
        "small_append_fdatasync_per_s": small_per_s.round(),
        "big_write_bytes": BIG_BYTES,
        "big_write_fdatasync_mb_per_s": (big_mb_per_s * 10.0).round() / 10.0,
    }))
}
