//! Rules both sides of the wire share: where a keyed message goes and how
//! big a message is. The broker's state machine applies them, the gRPC edge
//! and the client check against them, so they live here, apart from the
//! protobuf code, and depend on nothing.

/// The partition of a keyed message: FNV-1a (64-bit) of the key bytes, modulo
/// the partition count (0 counts as 1). Part of the wire contract, so that
/// clients can compute it; never change it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    slot_for_hash(key_hash(key), partitions)
}

/// A key's hash, as `partition_for_key` uses it. The broker keeps it in
/// place of the key: a waiting message needs only its hash to be routed
/// and ordered.
pub fn key_hash(key: &[u8]) -> u64 {
    fnv1a_64(key)
}

/// One of `slots` slots (0 counts as 1) for a key hash.
pub fn slot_for_hash(hash: u64, slots: u32) -> u32 {
    (hash % u64::from(slots.max(1))) as u32
}

/// FNV-1a, 64-bit: http://www.isthe.com/chongo/tech/comp/fnv/
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// What a message is made of, as the size rule counts it. Implemented by
/// each layer's message type (protobuf, state machine).
pub trait MessageParts {
    fn payload(&self) -> &[u8];
    fn key(&self) -> Option<&[u8]>;
    /// Each header's name and value.
    fn headers(&self) -> impl Iterator<Item = (&str, &str)>;
    /// Each text property that is set (content type, correlation id, ...);
    /// the timestamp, fixed in size, is framing.
    fn properties(&self) -> impl Iterator<Item = &str>;
}

/// Implements `MessageParts` for a message type with `payload`, `key:
/// Option<_>`, a `headers` map of strings and `properties: Option<_>` of a
/// type with the text properties as `Option<String>` fields, as every
/// layer's message type has: one definition, so that each layer counts its
/// messages alike.
#[macro_export]
macro_rules! impl_message_parts {
    ($message:ty) => {
        impl $crate::MessageParts for $message {
            fn payload(&self) -> &[u8] {
                &self.payload
            }
            fn key(&self) -> Option<&[u8]> {
                self.key.as_deref()
            }
            fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
                self.headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
            }
            fn properties(&self) -> impl Iterator<Item = &str> {
                self.properties.iter().flat_map(|p| {
                    [
                        &p.content_type,
                        &p.content_encoding,
                        &p.correlation_id,
                        &p.reply_to,
                        &p.message_id,
                        &p.r#type,
                        &p.app_id,
                    ]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                })
            }
        }
    };
}

/// A message's size in bytes: its payload, its key, each header's name
/// and value, and each text property. The one definition every limit on a message counts: the
/// node's largest message, a topic's retained bytes, how full a log entry
/// is, the client's request budget (which adds the protobuf framing).
/// Framing is left out: it depends on the encoding, the content does not.
pub fn message_bytes(message: &impl MessageParts) -> usize {
    let headers: usize = message
        .headers()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    let properties: usize = message.properties().map(str::len).sum();
    message.payload().len() + message.key().map_or(0, <[u8]>::len) + headers + properties
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The published FNV-1a vectors and a few keys and partition counts
    /// computed with the hash as the broker used it before this crate: the
    /// partition of a key may never change.
    #[test]
    fn key_hash_keeps_its_values() {
        let check = |key: &[u8], partitions: u32, hash: u64, partition: u32| {
            assert_eq!(fnv1a_64(key), hash, "hash of {key:?}");
            assert_eq!(partition_for_key(key, partitions), partition, "{key:?}");
            assert_eq!(u64::from(partition), hash % u64::from(partitions));
        };
        check(b"", 1000, 0xcbf29ce484222325, 37);
        check(b"a", 7, 0xaf63dc4c8601ec8c, 5);
        check(b"foobar", 16, 0x85944171f73967e8, 8);
        check(b"order-42", 4, 0x7d1deb86a05662d4, 0);
        check(b"k3", 3, 0x08be0d07b562215b, 0);
        check(&[0x00, 0xff], 1024, 0x0831c907b4ea2b60, 864);
    }

    #[test]
    fn zero_partitions_count_as_one() {
        assert_eq!(partition_for_key(b"anything", 0), 0);
    }

    struct Parts {
        payload: &'static [u8],
        key: Option<&'static [u8]>,
        headers: BTreeMap<&'static str, &'static str>,
        properties: Vec<&'static str>,
    }

    impl MessageParts for Parts {
        fn payload(&self) -> &[u8] {
            self.payload
        }
        fn key(&self) -> Option<&[u8]> {
            self.key
        }
        fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
            self.headers.iter().map(|(name, value)| (*name, *value))
        }
        fn properties(&self) -> impl Iterator<Item = &str> {
            self.properties.iter().copied()
        }
    }

    #[test]
    fn a_message_counts_payload_key_headers_and_properties() {
        let check = |parts: Parts, expected: usize| assert_eq!(message_bytes(&parts), expected);
        let none = BTreeMap::new;
        check(
            Parts {
                payload: b"",
                key: None,
                headers: none(),
                properties: vec![],
            },
            0,
        );
        check(
            Parts {
                payload: b"hello",
                key: None,
                headers: none(),
                properties: vec![],
            },
            5,
        );
        // An empty key counts nothing, like no key.
        check(
            Parts {
                payload: b"hello",
                key: Some(b""),
                headers: none(),
                properties: vec![],
            },
            5,
        );
        check(
            Parts {
                payload: b"hello",
                key: Some(b"k1"),
                headers: BTreeMap::from([("trace", "abc"), ("x", "")]),
                properties: vec![],
            },
            5 + 2 + (5 + 3) + 1,
        );
        check(
            Parts {
                payload: b"hello",
                key: None,
                headers: none(),
                properties: vec!["text/plain", "r-17"],
            },
            5 + 10 + 4,
        );
    }
}
