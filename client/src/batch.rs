//! Size accounting for publish requests: how many queued messages fit in one.

use prost::Message as _;
use raftmq_proto::v1 as proto;

/// Bytes of a request besides its messages, for topic names within the
/// contract's 255 characters: the topic field and the request id, framed.
pub(crate) const REQUEST_OVERHEAD_BYTES_MAX: usize = 512;
/// A message's framing inside a request: field tag and length varint.
const MESSAGE_FRAMING_BYTES_MAX: usize = 11;

/// The bytes a message adds to a publish request.
pub(crate) fn message_bytes(message: &proto::Message) -> usize {
    message.encoded_len() + MESSAGE_FRAMING_BYTES_MAX
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
}
