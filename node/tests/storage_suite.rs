//! openraft's storage conformance suite against the sled-backed log store
//! and state machine: the contract our storage must keep.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use raftmq_node::machine::Effect;
use raftmq_node::raft::typ::StorageError;
use raftmq_node::raft::{EffectSink, LogStore, StateMachineStore, TypeConfig};
use raftmq_node::storage::SledDisk;
use tempfile::TempDir;

/// The suite applies no broker commands, so effects have nowhere to go.
struct NoSessions;

impl EffectSink for NoSessions {
    fn effects(&self, _effects: Vec<Effect>) {}
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let disk = Arc::new(SledDisk::open(dir.path(), 16 * 1024 * 1024).expect("open sled"));
        let log = LogStore::new(disk.clone());
        let machine = StateMachineStore::open(disk, Arc::new(NoSessions))?;
        Ok((dir, log, machine))
    }
}

/// Runs on a plain test thread: the suite starts its own runtime.
#[test]
fn sled_storage_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
