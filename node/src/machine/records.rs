//! A partition's retained records, kept in chunks.
//!
//! One `VecDeque` per partition doubles its capacity as it grows: with
//! 5,000,000 records over eight partitions, each held room for 1,048,576,
//! 470 MB where the records took 280 MB, and each doubling copied the whole
//! partition inside one apply. Chunks of `CHUNK` records grow one at a time
//! instead, so a partition holds at most one partly used chunk of spare
//! room, and appending never moves what is already stored.

use std::collections::VecDeque;
use std::fmt;

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
    chunks: VecDeque<VecDeque<T>>,
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

impl<T> Records<T> {
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
            Some(last) if last.len() < CHUNK => last.push_back(record),
            _ => self.chunks.push_back(VecDeque::from([record])),
        }
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let first = self.chunks.front_mut()?;
        let record = first.pop_front();
        if first.is_empty() {
            self.chunks.pop_front();
        }
        if record.is_some() {
            self.len -= 1;
        }
        record
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

impl<'a, T> IntoIterator for &'a Records<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Flatten<std::collections::vec_deque::Iter<'a, VecDeque<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

impl<'a, T> IntoIterator for &'a mut Records<T> {
    type Item = &'a mut T;
    type IntoIter = std::iter::Flatten<std::collections::vec_deque::IterMut<'a, VecDeque<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter_mut().flatten()
    }
}

impl<T: Serialize> Serialize for Records<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for record in self {
            seq.serialize_element(record)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Records<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Sequence<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Sequence<T> {
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
}
