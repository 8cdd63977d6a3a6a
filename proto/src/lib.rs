//! The raftmq wire contract: generated protobuf types and services, and the
//! rules both sides share (`raftmq-rules`): the key hash that decides a
//! keyed message's partition and the size of a message.

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

/// The key hash and the message size rule, shared with the broker's state
/// machine (`raftmq-rules`): re-exported so that a client needs only this
/// crate.
pub use raftmq_rules::{message_bytes, partition_for_key, MessageParts};

raftmq_rules::impl_message_parts!(v1::Message);

#[cfg(test)]
mod tests {
    use super::{message_bytes, partition_for_key, v1};

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

    /// The protobuf message is counted by the shared rule: payload, key,
    /// each header's name and value, and each text property.
    #[test]
    fn a_protobuf_message_counts_payload_key_headers_and_properties() {
        let message = v1::Message {
            key: Some(b"k1".to_vec().into()),
            payload: b"hello".to_vec().into(),
            headers: [("trace".to_string(), "abc".to_string())].into(),
            properties: Some(Box::new(v1::Properties {
                correlation_id: Some("r-17".into()),
                r#type: Some("order".into()),
                timestamp_ms: Some(1),
                ..Default::default()
            })),
        };
        assert_eq!(message_bytes(&message), 5 + 2 + 5 + 3 + 4 + 5);
    }
}
