//! openraft's storage conformance suite against the log store and state
//! machine on the production disk (segment files and sled): the contract
//! our storage must keep.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use raftmq_node::clock::SystemClock;
use raftmq_node::machine::Effect;
use raftmq_node::raft::typ::StorageError;
use raftmq_node::raft::{EffectSink, LogStore, StateMachineStore, TypeConfig, BODY_CACHE_BYTES};
use raftmq_node::storage::LocalDisk;
use tempfile::TempDir;

/// The suite applies no broker commands, so effects have nowhere to go.
struct NoSessions;

impl EffectSink for NoSessions {
    fn effects(&self, _effects: Vec<Effect>) {}
    fn snapshot_installed(&self) {}
}

struct DiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for DiskBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let disk = Arc::new(LocalDisk::open(dir.path(), 16 * 1024 * 1024).expect("open disk"));
        let log = LogStore::new(disk.clone());
        let machine = StateMachineStore::open(
            disk,
            Arc::new(NoSessions),
            Arc::new(SystemClock),
            BODY_CACHE_BYTES,
        )?;
        Ok((dir, log, machine))
    }
}

/// Runs on a plain test thread: the suite starts its own runtime.
#[test]
fn local_disk_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(DiskBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
