//! The raftmq wire contract: generated protobuf types and services, and the
//! key hash that decides a keyed message's partition.

/// The public broker API (`raftmq.v1`).
pub mod v1 {
    tonic::include_proto!("raftmq.v1");
}

/// Internal Raft RPCs between nodes (`raftmq.raft.v1`).
pub mod raft {
    tonic::include_proto!("raftmq.raft.v1");
}

/// Response metadata key naming the leader's address on a redirect.
pub const LEADER_METADATA_KEY: &str = "x-raftmq-leader";

/// The partition of a keyed message: FNV-1a (64-bit) of the key bytes, modulo
/// the partition count. Part of the wire contract, so that clients can
/// compute it; never change it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(key);
    (hasher.finish() % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::partition_for_key;

    /// The published FNV-1a test vectors pin the function: clients in other
    /// languages rely on these exact values.
    #[test]
    fn key_hash_matches_fnv1a_64_vectors() {
        // fnv1a64("") = 0xcbf29ce484222325, fnv1a64("a") = 0xaf63dc4c8601ec8c
        assert_eq!(
            partition_for_key(b"", 1000),
            (0xcbf29ce484222325u64 % 1000) as u32
        );
        assert_eq!(
            partition_for_key(b"a", 7),
            (0xaf63dc4c8601ec8cu64 % 7) as u32
        );
    }
}
