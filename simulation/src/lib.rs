//! raftmq-sim: the real node code (Raft, state machine, storage adapter,
//! delivery) under turmoil, with only its seams swapped: simulated TCP
//! (`net`), an in-memory disk that loses unflushed writes on a crash
//! (`disk`), a jumpable wall clock (`clock`) and one seed for every random
//! choice. `run` drives one seed; `checker` and `oracle` judge the
//! invariants of DESIGN.md; `faults` injects the chaos; `long_log` holds
//! it back on seeds that first grow a long log.

pub mod checker;
pub mod clock;
pub mod disk;
pub mod fanout;
pub mod faults;
pub mod long_log;
pub mod net;
pub mod oracle;
pub mod rpc_faults;
pub mod run;
pub mod trace;
pub mod workload;

pub use run::{run, Report};
