//! Size accounting for publish requests: how many queued messages fit in one.

use prost::encoding::encoded_len_varint;
use raftmq_proto::v1 as proto;

/// Bytes of a request besides its messages, for topic names within the
/// contract's 255 characters: the topic field and the request id, framed.
pub(crate) const REQUEST_OVERHEAD_BYTES_MAX: usize = 512;
/// A message's framing inside a request: field tag and length varint.
const MESSAGE_FRAMING_BYTES_MAX: usize = 11;
/// A field's tag: field numbers 1 to 15 take one byte.
const TAG_BYTES: usize = 1;

/// The bytes a message adds to a publish request: its size by the rule the
/// node's limits count (`raftmq_proto::message_bytes`: payload, key, header
/// names and values) plus its protobuf framing. Not that size alone: the
/// budget it is checked against, `request_bytes_max`, bounds the encoded
/// request the node decodes, so the framing must be counted too; the sum is
/// the message's exact encoded length plus its framing inside the request.
pub(crate) fn message_bytes(message: &proto::Message) -> usize {
    raftmq_proto::message_bytes(message) + field_framing_bytes(message) + MESSAGE_FRAMING_BYTES_MAX
}

/// What protobuf adds around a message's fields: a tag and a length before
/// each field it encodes. An empty payload, header name or header value is
/// not encoded; a key is whenever it is present, even empty. Each header is
/// a map entry: framed itself, around its framed name and value.
fn field_framing_bytes(message: &proto::Message) -> usize {
    let framing = |len: usize| TAG_BYTES + encoded_len_varint(len as u64);
    let framing_unless_empty = |len: usize| if len == 0 { 0 } else { framing(len) };
    let key = message.key.as_ref().map_or(0, |key| framing(key.len()));
    let payload = framing_unless_empty(message.payload.len());
    let headers: usize = message
        .headers
        .iter()
        .map(|(name, value)| {
            let inner = framing_unless_empty(name.len()) + framing_unless_empty(value.len());
            framing(name.len() + value.len() + inner) + inner
        })
        .sum();
    // The properties' text is in the size already; the rest of their
    // encoding (tags, lengths, the timestamp) is framing.
    let properties = message.properties.as_ref().map_or(0, |properties| {
        let encoded = prost::Message::encoded_len(properties.as_ref());
        let text: usize = raftmq_proto::MessageParts::properties(message)
            .map(str::len)
            .sum();
        framing(encoded) + encoded - text
    });
    key + payload + headers + properties
}

/// The bytes of a request before any message is added.
pub(crate) fn envelope_bytes(topic: &str) -> usize {
    topic.len() + REQUEST_OVERHEAD_BYTES_MAX
}

/// A request being filled, against both limits at once.
#[derive(Debug)]
pub(crate) struct BatchSize {
    messages: usize,
    messages_max: usize,
    bytes: usize,
    bytes_max: usize,
}

impl BatchSize {
    pub(crate) fn new(topic: &str, messages_max: usize, bytes_max: usize) -> BatchSize {
        BatchSize {
            messages: 0,
            messages_max,
            bytes: envelope_bytes(topic),
            bytes_max,
        }
    }

    /// Counts a message in if it fits. The first message always fits: `send`
    /// already refused any message too large for a request of its own.
    pub(crate) fn try_add(&mut self, message_bytes: usize) -> bool {
        let fits = self.messages == 0
            || (self.messages < self.messages_max && self.bytes + message_bytes <= self.bytes_max);
        if fits {
            self.messages += 1;
            self.bytes += message_bytes;
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a queue of message sizes into requests the way the producer
    /// does (take in order until one does not fit) and compares the counts.
    fn check(messages_max: usize, bytes_max: usize, sizes: &[usize], expected: &[usize]) {
        let mut requests = Vec::new();
        let mut queue = sizes.iter().copied().peekable();
        for _ in 0..sizes.len() {
            if queue.peek().is_none() {
                break;
            }
            let mut batch = BatchSize::new("t", messages_max, bytes_max);
            let mut count = 0;
            while queue.next_if(|&size| batch.try_add(size)).is_some() {
                count += 1;
            }
            requests.push(count);
        }
        assert_eq!(requests, expected);
    }

    #[test]
    fn batches_respect_the_message_limit() {
        check(2, 1 << 20, &[10, 10, 10, 10, 10], &[2, 2, 1]);
    }

    #[test]
    fn batches_respect_the_byte_limit() {
        let room = 1000;
        let bytes_max = envelope_bytes("t") + room;
        check(100, bytes_max, &[400, 400, 400, 1000, 1], &[2, 1, 1, 1]);
    }

    #[test]
    fn a_message_alone_always_fits() {
        check(100, 0, &[5000, 5000], &[1, 1]);
    }

    /// A message's request bytes are its encoded length plus its framing in
    /// the request, whatever its fields: empty, absent, or long enough that
    /// a length takes more varint bytes.
    #[test]
    fn message_bytes_are_the_encoding_plus_framing() {
        use prost::Message as _;
        let lengths = [0, 1, 127, 128, 16_383, 16_384];
        let text = |len: usize| "x".repeat(len);
        let blob = |len: usize| bytes::Bytes::from(vec![7u8; len]);
        let mut messages = vec![proto::Message::default()];
        for len in lengths {
            messages.push(proto::Message {
                key: Some(blob(len)),
                payload: blob(len),
                headers: Default::default(),
                properties: None,
            });
            messages.push(proto::Message {
                key: None,
                payload: blob(len),
                headers: [
                    (text(len), text(1)),
                    (text(1) + "n", text(len)),
                    (String::new(), text(len)),
                ]
                .into(),
                properties: Some(Box::new(proto::Properties {
                    content_type: Some(text(len)),
                    reply_to: Some(text(1)),
                    timestamp_ms: Some(u64::MAX),
                    ..Default::default()
                })),
            });
        }
        for message in messages {
            assert_eq!(
                message_bytes(&message),
                message.encoded_len() + MESSAGE_FRAMING_BYTES_MAX,
                "{:?} {:?}",
                message.key.as_ref().map(|k| k.len()),
                message.payload.len()
            );
        }
    }
}
