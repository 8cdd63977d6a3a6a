//! A message to publish.

use std::collections::BTreeMap;

use bytes::Bytes;
use raftmq_proto::v1 as proto;

/// What a message says of itself, as AMQP's basic properties do
/// (`content_type`, `correlation_id`, `reply_to`, ...): stored and
/// delivered unchanged. The protobuf type itself; every field is optional.
pub use proto::Properties;

/// A message to publish: payload, optional key, string headers, properties.
///
/// Messages with a key land on partition `fnv1a64(key) mod partitions`, so
/// messages sharing a key keep their order; keyless ones are spread round
/// robin. Build one with `Message::new(payload).with_key(k).with_header(n, v)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// Sorted so that a message prints and compares the same way every time.
    pub headers: BTreeMap<String, String>,
    /// Boxed: most messages set none, and a pending message stays small.
    pub properties: Option<Box<Properties>>,
}

impl Message {
    pub fn new(payload: impl Into<Bytes>) -> Message {
        Message {
            payload: payload.into(),
            ..Message::default()
        }
    }

    /// Sets every property at once: `Properties { correlation_id:
    /// Some(id), ..Default::default() }`.
    pub fn with_properties(mut self, properties: Properties) -> Message {
        self.properties = (properties != Properties::default()).then(|| Box::new(properties));
        self
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Message {
        self.key = Some(key.into());
        self
    }

    /// Sets a header, replacing an earlier value of the same name.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The partition this message's key maps to (see `partition_for_key`),
    /// or `None` for a keyless message.
    pub fn partition(&self, partitions: u32) -> Option<u32> {
        self.key
            .as_ref()
            .map(|key| raftmq_proto::partition_for_key(key, partitions))
    }
}

impl From<Message> for proto::Message {
    fn from(message: Message) -> proto::Message {
        proto::Message {
            key: message.key,
            payload: message.payload,
            headers: message.headers.into_iter().collect(),
            properties: message.properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_fills_every_field() {
        let message = Message::new("hello")
            .with_key("user-7")
            .with_header("trace", "1")
            .with_header("trace", "2")
            .with_header("kind", "greeting")
            .with_properties(Properties {
                correlation_id: Some("r-1".into()),
                ..Properties::default()
            });
        let wire = proto::Message::from(message);
        let properties = wire.properties.as_ref().expect("properties sent");
        assert_eq!(properties.correlation_id.as_deref(), Some("r-1"));
        assert_eq!(
            proto::Message::from(Message::new("x")).properties,
            None,
            "none sent when none is set"
        );
        assert_eq!(wire.payload, Bytes::from_static(b"hello"));
        assert_eq!(wire.key, Some(Bytes::from_static(b"user-7")));
        assert_eq!(wire.headers.len(), 2);
        assert_eq!(wire.headers.get("trace").map(String::as_str), Some("2"));
        assert_eq!(
            wire.headers.get("kind").map(String::as_str),
            Some("greeting")
        );
    }

    #[test]
    fn a_keyless_message_has_no_partition_and_a_keyed_one_follows_the_hash() {
        assert_eq!(Message::new("x").partition(8), None);
        let keyed = Message::new("x").with_key("a");
        assert_eq!(
            keyed.partition(7),
            Some(raftmq_proto::partition_for_key(b"a", 7))
        );
    }
}
