//! A partition's retained records, kept in shared chunks.
//!
//! One `VecDeque` per partition doubles its capacity as it grows: with
//! 5,000,000 records over eight partitions, each held room for 1,048,576,
//! 470 MB where the records took 280 MB, and each doubling copied the whole
//! partition inside one apply. Chunks of `CHUNK` records grow one at a time
//! instead, so a partition holds at most one partly used chunk of spare
//! room, and appending never moves what is already stored.
//!
//! Chunks are shared (`Arc`) and copied on write: a snapshot copies the
//! state under the apply lock and encodes the copy outside it, and with
//! shared chunks that copy costs a pointer per chunk instead of every
//! record (tens of milliseconds of stalled applies at 1,000,000 records).
//! Appending and trimming copy at most the last and the first chunk while a
//! snapshot holds them; the chunks in between are never written again
//! but by a relocation.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Records per chunk: 4,096 of 56 bytes, about 230 KB.
const CHUNK: usize = 4096;

/// A sequence of records, appended at the back and trimmed from the front.
/// Every chunk but the first and the last is full, so that an index finds
/// its chunk by division. Encoded as one sequence, like the `VecDeque` it
/// replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records<T> {
    chunks: VecDeque<Arc<VecDeque<T>>>,
    len: usize,
}

impl<T> Default for Records<T> {
    fn default() -> Self {
        Records {
            chunks: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T: Clone> Records<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        let first = self.chunks.front()?;
        match index.checked_sub(first.len()) {
            None => first.get(index),
            Some(past) => self.chunks.get(1 + past / CHUNK)?.get(past % CHUNK),
        }
    }

    pub fn push_back(&mut self, record: T) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push_back(record),
            _ => self.chunks.push_back(Arc::new(VecDeque::from([record]))),
        }
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let first = self.chunks.front_mut()?;
        let record = Arc::make_mut(first).pop_front();
        if first.is_empty() {
            self.chunks.pop_front();
        }
        if record.is_some() {
            self.len -= 1;
        }
        record
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// Changes every record `wanted` picks: copies only the chunks holding
    /// one that a snapshot still shares.
    pub fn change(&mut self, wanted: impl Fn(&T) -> bool, mut change: impl FnMut(&mut T)) {
        for chunk in &mut self.chunks {
            if chunk.iter().any(&wanted) {
                for record in Arc::make_mut(chunk).iter_mut().filter(|r| wanted(r)) {
                    change(record);
                }
            }
        }
    }
}

impl<T: Serialize + Clone> Serialize for Records<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for record in self.iter() {
            seq.serialize_element(record)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de> + Clone> Deserialize<'de> for Records<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Sequence<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Clone> Visitor<'de> for Sequence<T> {
            type Value = Records<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records<T>, A::Error> {
                let mut records = Records::default();
                while let Some(record) = seq.next_element()? {
                    records.push_back(record);
                }
                Ok(records)
            }
        }
        deserializer.deserialize_seq(Sequence(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Across several chunks, trimmed from the front in steps that cross
    /// chunk bounds, it answers as a `VecDeque` does, and encodes alike.
    #[test]
    fn chunks_answer_as_one_sequence() {
        let mut records: Records<u64> = Records::default();
        let mut model = VecDeque::new();
        let mut n = 0;
        for round in 0..6 {
            for _ in 0..(CHUNK * 2 + 17) {
                records.push_back(n);
                model.push_back(n);
                n += 1;
            }
            for _ in 0..(CHUNK + round * 1000) {
                assert_eq!(records.pop_front(), model.pop_front());
            }
            assert_eq!(records.len(), model.len());
            for i in [
                0,
                1,
                CHUNK - 1,
                CHUNK,
                CHUNK + 1,
                model.len() - 1,
                model.len(),
            ] {
                assert_eq!(records.get(i), model.get(i), "index {i} in round {round}");
            }
            assert!(records.iter().eq(model.iter()));
            assert!(
                records.chunks.len() <= model.len() / CHUNK + 2,
                "spare chunks"
            );
        }
        let encoded = postcard::to_stdvec(&records).expect("encode");
        assert_eq!(encoded, postcard::to_stdvec(&model).expect("encode"));
        let decoded: Records<u64> = postcard::from_bytes(&encoded).expect("decode");
        assert!(decoded.iter().eq(model.iter()));
        while records.pop_front().is_some() {}
        assert!(records.is_empty() && records.chunks.is_empty());
    }

    /// A copy taken for a snapshot keeps what it saw, whatever is
    /// appended, trimmed or changed after it.
    #[test]
    fn a_copy_keeps_what_it_saw() {
        let mut records: Records<u64> = Records::default();
        for n in 0..(CHUNK as u64 * 3) {
            records.push_back(n);
        }
        let seen: Vec<u64> = records.iter().copied().collect();
        let copy = records.clone();
        records.push_back(u64::MAX);
        records.pop_front();
        records.change(|r| *r % 1000 == 0, |r| *r += 1);
        assert!(copy.iter().eq(seen.iter()));
        assert_eq!(
            records.get(999),
            Some(&1001),
            "1000, changed, after one trimmed"
        );
        assert_eq!(records.len(), seen.len());
        // Chunks nothing changed are still shared.
        let shared = copy
            .chunks
            .iter()
            .zip(&records.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, 0, "every chunk held a multiple of 1000");
        let mut untouched = copy.clone();
        untouched.change(|r| *r == u64::MAX, |r| *r = 0);
        assert!(untouched
            .chunks
            .iter()
            .zip(&copy.chunks)
            .all(|(a, b)| Arc::ptr_eq(a, b)));
    }
}
