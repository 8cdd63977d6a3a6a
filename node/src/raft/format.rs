//! The on-disk format version. Log entries and snapshots are postcard
//! encodings of Rust types, so a build whose commands or state changed shape
//! cannot read older data; rather than fail deep in a decode (a crash loop
//! on restart), a node checks the version recorded with its data first.

use crate::storage::{Disk, StorageError};

/// Bump whenever `machine::Command`, `machine::State`, the stored
/// snapshot or their layout on disk change. 3: the log and the snapshot
/// moved from sled trees to files. 4: a topic's retained bytes count
/// headers (`raftmq_rules::message_bytes`). 5: the state keeps records
/// pointing at bodies in the log, and `imports/` holds entries shipped
/// with a snapshot. 6: a snapshot's data is compressed (zstd), and topics
/// are declared and deleted (`Command::CreateTopic` gained a field), and
/// messages carry properties (`NewMessage::properties`) and a record its
/// TTL (`Stored::ttl_ms`), and the state holds exchanges
/// (`State::exchanges`, `Command::PublishTo`). 7: a member of the
/// membership has a peer and a client address (`raft::Addresses`).
pub const STORAGE_FORMAT: u32 = 7;

const FORMAT_KEY: &[u8] = b"storage_format";

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the data was written with storage format {found}, this build reads format {STORAGE_FORMAT}; start it on an empty data directory")]
    Incompatible { found: String },
    #[error(transparent)]
    Disk(#[from] StorageError),
}

/// Records the format on fresh data; refuses data of another format (data
/// without a record predates the record and is refused too).
pub fn check_format(disk: &dyn Disk) -> Result<(), FormatError> {
    match disk.get(FORMAT_KEY)? {
        Some(bytes) if bytes == STORAGE_FORMAT.to_be_bytes() => Ok(()),
        Some(bytes) => Err(FormatError::Incompatible {
            found: bytes
                .try_into()
                .map(|b: [u8; 4]| u32::from_be_bytes(b).to_string())
                .unwrap_or_else(|_| "unknown".into()),
        }),
        None if disk.is_empty()? => {
            let version = STORAGE_FORMAT.to_be_bytes().to_vec();
            disk.put(FORMAT_KEY, version)?;
            disk.flush()?;
            Ok(())
        }
        None => Err(FormatError::Incompatible {
            found: "1 or older".into(),
        }),
    }
}
