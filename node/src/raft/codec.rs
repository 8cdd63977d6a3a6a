//! postcard encoding for everything the Raft layer writes to disk or sends
//! to peers: compact, deterministic, and serde-driven.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("postcard: {0}")]
pub struct CodecError(#[from] postcard::Error);

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// The bytes `encode` would give, counted without keeping them.
pub fn encoded_size<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    Ok(postcard::serialize_with_flavor(
        value,
        postcard::ser_flavors::Size::default(),
    )?)
}

/// Encodes `value` into `out` as it goes, with no buffer of the whole.
pub fn encode_into<T: Serialize>(value: &T, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    postcard::to_io(value, out)
        .map(drop)
        .map_err(std::io::Error::other)
}
