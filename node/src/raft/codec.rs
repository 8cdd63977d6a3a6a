//! postcard encoding for everything the Raft layer writes to disk or sends
//! to peers: compact, deterministic, and serde-driven. A snapshot is also
//! compressed (zstd): its records repeat one another field for field.

use std::io::Read;

use postcard::de_flavors::Flavor;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("reading what to decode: {0}")]
    Read(#[from] std::io::Error),
    #[error("bytes follow the compressed value")]
    Trailing,
}

/// zstd's fastest level: a snapshot of 1,000,000 retained messages goes
/// from 14.8 MB to 1.5 MB in about 30 ms (level 3: 1.2 MB, 50 ms), and it
/// is the bytes written, not the CPU, that cost other writers their
/// latency while it is taken (BENCHMARKS.md).
const COMPRESSION_LEVEL: i32 = 1;
/// What the encoder gathers before each call into the compressor.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

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

/// Encodes `value` into `out` compressed, as it goes; the frame carries a
/// checksum of what it holds.
pub fn encode_compressed_into<T: Serialize>(
    value: &T,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut compressing = zstd::Encoder::new(out, COMPRESSION_LEVEL)?;
    compressing.include_checksum(true)?;
    // Buffered before the compressor: postcard writes a field at a time.
    let mut buffered = std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, compressing);
    encode_into(value, &mut buffered)?;
    buffered
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .finish()
        .map(drop)
}

/// Decodes what `encode_compressed_into` wrote, as it reads it, and reads
/// on to the end of `from`: the frame's checksum is checked, and anything
/// after the frame is an error.
pub fn decode_compressed_from<T: DeserializeOwned>(from: impl Read) -> Result<T, CodecError> {
    // Buffered past the decompressor: postcard reads a byte at a time.
    let mut decompressed = std::io::BufReader::new(zstd::Decoder::new(from)?);
    let value = decode_from(&mut decompressed)?;
    let mut past = [0];
    match decompressed.read(&mut past)? {
        0 => Ok(value),
        _ => Err(CodecError::Trailing),
    }
}

/// Decodes what `encode_into` wrote, reading it as it goes: no buffer of
/// the whole, only of the largest string in it.
pub fn decode_from<T: DeserializeOwned>(from: impl Read) -> Result<T, CodecError> {
    let mut flavor = Reading {
        from,
        scratch: Vec::new(),
        failed: None,
    };
    let decoded = T::deserialize(&mut postcard::Deserializer::from_flavor(&mut flavor));
    match (decoded, flavor.failed) {
        (_, Some(failed)) => Err(failed.into()),
        (decoded, None) => Ok(decoded?),
    }
}

/// postcard's input from a reader. postcard's own (`from_io`) needs a
/// buffer as large as the largest string up front; this one grows its
/// buffer to each string it reads. Owned values never borrow from the
/// input, so borrowing is refused.
struct Reading<R> {
    from: R,
    scratch: Vec<u8>,
    /// Why reading failed: postcard's errors cannot carry it.
    failed: Option<std::io::Error>,
}

impl<R: Read> Reading<R> {
    fn read_exact(&mut self, into: &mut [u8]) -> postcard::Result<()> {
        self.from.read_exact(into).map_err(|e| {
            self.failed = Some(e);
            postcard::Error::DeserializeUnexpectedEnd
        })
    }
}

impl<'de, R: Read + 'de> Flavor<'de> for &'de mut Reading<R> {
    type Remainder = ();
    type Source = ();

    fn pop(&mut self) -> postcard::Result<u8> {
        let mut byte = [0];
        self.read_exact(&mut byte)?;
        Ok(byte[0])
    }

    fn try_take_n(&mut self, _ct: usize) -> postcard::Result<&'de [u8]> {
        Err(postcard::Error::DeserializeUnexpectedEnd)
    }

    fn try_take_n_temp<'a>(&'a mut self, ct: usize) -> postcard::Result<&'a [u8]>
    where
        'de: 'a,
    {
        // Grown as bytes arrive, not to the length the input claims: a
        // damaged length fails at the end of the input, not in allocating.
        self.scratch.clear();
        let read = (&mut self.from)
            .take(ct as u64)
            .read_to_end(&mut self.scratch);
        match read {
            Ok(n) if n == ct => Ok(&self.scratch[..]),
            Ok(_) => {
                self.failed = Some(std::io::ErrorKind::UnexpectedEof.into());
                Err(postcard::Error::DeserializeUnexpectedEnd)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(postcard::Error::DeserializeUnexpectedEnd)
            }
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// What is decoded from a reader is what `decode` gives from the
    /// bytes, strings of any length included; a short input is an error.
    #[test]
    fn decoding_from_a_reader_matches_decoding_bytes() {
        type Value = (u64, Vec<u8>, BTreeMap<String, Option<String>>, bytes::Bytes);
        let long = "x".repeat(100_000);
        let value: Value = (
            u64::MAX,
            vec![1, 2, 3],
            BTreeMap::from([("a".into(), None), (long.clone(), Some(long))]),
            bytes::Bytes::from_static(b"payload"),
        );
        let mut written = Vec::new();
        encode_into(&value, &mut written).expect("encode");
        assert_eq!(written, encode(&value).expect("encode"));
        let decoded: Value = decode_from(&written[..]).expect("decode");
        assert_eq!(decoded, value);

        let short = &written[..written.len() - 1];
        assert!(matches!(
            decode_from::<Value>(short),
            Err(CodecError::Read(_))
        ));
        // A string that claims 4 GiB fails at the end of the input.
        let damaged = [0xff, 0xff, 0xff, 0xff, 0x0f, b'x'];
        assert!(matches!(
            decode_from::<String>(&damaged[..]),
            Err(CodecError::Read(_))
        ));
    }

    /// Compressed, a run of like records shrinks; it decodes back whole,
    /// and a damaged, cut or extended frame is an error.
    #[test]
    fn compressed_values_decode_back_and_damage_is_found() {
        let value: Vec<(u64, u32, u64)> = (0..10_000u64)
            .map(|i| (1_000 + i / 100, 1024, 1_780_000_000_000 + i / 10))
            .collect();
        let mut written = Vec::new();
        encode_compressed_into(&value, &mut written).expect("encode");
        let plain = encode(&value).expect("encode").len();
        assert!(written.len() * 5 < plain, "{} of {plain}", written.len());
        let decoded: Vec<(u64, u32, u64)> = decode_compressed_from(&written[..]).expect("decode");
        assert_eq!(decoded, value);

        let mut damaged = written.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        assert!(decode_compressed_from::<Vec<(u64, u32, u64)>>(&damaged[..]).is_err());
        let cut = &written[..written.len() - 1];
        assert!(decode_compressed_from::<Vec<(u64, u32, u64)>>(cut).is_err());
        let mut extended = written.clone();
        extended.extend_from_slice(&written);
        assert!(matches!(
            decode_compressed_from::<Vec<(u64, u32, u64)>>(&extended[..]),
            Err(CodecError::Trailing)
        ));
    }
}
