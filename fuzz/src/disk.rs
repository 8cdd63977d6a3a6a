//! Target: every file the node decodes when it opens a data directory (log
//! segments, the snapshot, imports). A real data directory, with a
//! snapshot and a log after it, is copied and one of those files mutated;
//! a node then starts on it: it may refuse to start or stop its Raft core
//! with an error, but must not panic or hang.
//!
//! sled's own files are left alone: sled is not this project's decoder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::mutate::mutate;
use crate::node;

/// Builds the data directory every case starts from, in `dir`: topics,
/// messages, a consumer's acks, a snapshot (every 20 entries) and entries
/// after it.
pub async fn prepare(dir: &Path) -> Result<(), String> {
    let running = node::start(dir, 20).await?;
    if !running.settle(Duration::from_secs(10)).await {
        return Err("the node did not lead".to_string());
    }
    let client =
        raftmq_client::Client::connect(vec![running.addr.clone()]).map_err(|e| e.to_string())?;
    client
        .create_topic("t", 2)
        .await
        .map_err(|e| e.to_string())?;
    for i in 0..60u32 {
        let message = raftmq_client::Message::new(format!("m{i}")).with_key(format!("k{}", i % 5));
        client
            .publish("t", vec![message])
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut consumer = client
        .subscribe("t", "s", 10)
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..5 {
        if let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(5), consumer.next()).await
        {
            let _ = consumer.ack([&delivery]).await;
        }
    }
    drop(consumer);
    client
        .take_snapshot(&running.addr)
        .await
        .map_err(|e| e.to_string())?;
    for i in 0..10u32 {
        let message = raftmq_client::Message::new(format!("after{i}"));
        client
            .publish("t", vec![message])
            .await
            .map_err(|e| e.to_string())?;
    }
    running.stop().await;
    Ok(())
}

/// The files of ours in `dir` (not sled's): what a case may mutate.
pub fn ours(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let snapshot = dir.join("raft-snapshot");
    if snapshot.is_file() {
        files.push(snapshot);
    }
    for sub in ["log", "imports"] {
        let mut stack = vec![dir.join(sub)];
        while let Some(at) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&at) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// One case: a copy of `prepared` in `scratch` with one of our files
/// mutated, and a node started on it. Returns whether the node started
/// and applied its log, or what went wrong.
pub async fn run(rng: &mut StdRng, prepared: &Path, scratch: &Path) -> Result<bool, String> {
    let _ = std::fs::remove_dir_all(scratch);
    copy_dir(prepared, scratch).map_err(|e| format!("copying: {e}"))?;
    let files = ours(scratch);
    let file = &files[rng.gen_range(0..files.len())];
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    let other = std::fs::read(&files[rng.gen_range(0..files.len())]).map_err(|e| e.to_string())?;
    // Segments can be far larger than a mutation's bound: mutate a window
    // of them in place.
    let mutated = if bytes.len() > crate::mutate::INPUT_BYTES_MAX / 2 {
        let start = rng.gen_range(0..bytes.len() - 1024);
        let end = (start + 1024).min(bytes.len());
        let mut whole = bytes[..start].to_vec();
        whole.extend(mutate(rng, &bytes[start..end], &other));
        whole.extend_from_slice(&bytes[end..]);
        whole
    } else {
        mutate(rng, &bytes, &other)
    };
    std::fs::write(file, mutated).map_err(|e| e.to_string())?;
    let running =
        match tokio::time::timeout(Duration::from_secs(20), node::start(scratch, 20)).await {
            Err(_) => return Err(format!("starting on a mutated {} hung", file.display())),
            Ok(Err(_refused)) => return Ok(false),
            Ok(Ok(running)) => running,
        };
    let applied = running.settle(Duration::from_secs(2)).await;
    if let Err(broken) = running.node.read_state(|state| state.check_invariants()) {
        running.stop().await;
        return Err(format!(
            "a mutated {} decoded into a broken state: {broken}",
            file.display()
        ));
    }
    running.stop().await;
    Ok(applied)
}
