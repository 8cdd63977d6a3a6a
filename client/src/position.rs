//! Where a message is stored.

use raftmq_proto::v1 as proto;
use serde::Serialize;

/// A message's place in a topic: its partition and its offset there. Publish
/// confirms return it; acks and nacks name messages by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

impl Position {
    pub fn new(partition: u32, offset: u64) -> Position {
        Position { partition, offset }
    }
}

impl From<proto::Position> for Position {
    fn from(position: proto::Position) -> Position {
        Position::new(position.partition, position.offset)
    }
}

impl From<Position> for proto::Position {
    fn from(position: Position) -> proto::Position {
        proto::Position {
            partition: position.partition,
            offset: position.offset,
        }
    }
}

impl From<&Position> for Position {
    fn from(position: &Position) -> Position {
        *position
    }
}
