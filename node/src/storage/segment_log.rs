//! The Raft log as append-only segment files.
//!
//! sled kept large log entries in leaf nodes and rewrote a whole leaf on
//! each append: ~2.7 bytes reached the disk per byte of log (BENCHMARKS.md).
//! Here an entry is written once, appended to the newest segment and synced
//! with `fdatasync`. Segments are named for the first index they hold;
//! purging hides entries from the log's reads, releasing deletes whole
//! segments once purged and no retained message's body is in them, and
//! truncating cuts the newest ones at a record boundary.
//!
//! A record is `payload length: u32 | crc32: u32 | index: u64 | payload`,
//! little-endian, the CRC over index and payload. Indexes are consecutive
//! across all segments. On open every segment is read back: a torn or
//! corrupt record at the end of the newest segment is what a crash in the
//! middle of an append leaves (that append was never acknowledged), so it is
//! cut off; anywhere else it is corruption and opening fails.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LogEntry, StorageError};

const HEADER_BYTES: u64 = 16;
/// A record claiming more than this is garbage, not an entry.
const RECORD_PAYLOAD_MAX: u32 = 1 << 30;
const SUFFIX: &str = ".seg";

pub struct SegmentLog {
    dir: PathBuf,
    /// A new segment is started once the newest one has grown past this.
    segment_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By the index of their first record; the last one takes appends.
    segments: BTreeMap<u64, Segment>,
    /// Where each record on disk is, for indexes `first..first + len`.
    records: VecDeque<Position>,
    /// Index of `records[0]`.
    first: u64,
    /// Records below this are purged: hidden from `range` and `last`, on
    /// disk until released.
    purged_below: u64,
}

struct Segment {
    /// Shared so a sync can run without holding the lock readers need.
    file: Arc<File>,
    len: u64,
}

#[derive(Clone, Copy)]
struct Position {
    segment: u64,
    offset: u64,
    payload_len: u32,
}

impl SegmentLog {
    /// Opens the log in `dir`, creating it if needed, and cuts off a torn
    /// tail left by a crash.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, StorageError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut firsts = Vec::new();
        for dirent in std::fs::read_dir(dir)? {
            let name = dirent?.file_name();
            let first = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut inner = Inner::default();
        let newest = firsts.last().copied();
        for first in firsts {
            let path = segment_path(dir, first);
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let (positions, valid_len) = scan(&file, first, &path)?;
            let len = file.metadata()?.len();
            if valid_len < len {
                if Some(first) != newest {
                    return Err(corrupt(
                        &path,
                        valid_len,
                        "a damaged record before the newest segment",
                    ));
                }
                tracing::warn!(path = %path.display(), valid_len, len, "cutting a torn log tail");
                file.set_len(valid_len)?;
                file.sync_data()?;
            }
            if inner.records.is_empty() {
                inner.first = first;
                inner.purged_below = first;
            } else if !positions.is_empty() && first != inner.next() {
                return Err(corrupt(
                    &path,
                    0,
                    &format!("starts at index {first} after {}", inner.next() - 1),
                ));
            }
            inner.records.extend(positions);
            inner.segments.insert(
                first,
                Segment {
                    file: Arc::new(file),
                    len: valid_len,
                },
            );
        }
        Ok(SegmentLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends entries whose indexes follow the last entry (any index when
    /// the log is empty) and syncs them.
    pub fn append(&self, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let Some((first_index, _)) = entries.first() else {
            return Ok(());
        };
        let mut payload_lens = Vec::with_capacity(entries.len());
        for (n, (index, payload)) in entries.iter().enumerate() {
            if *index != first_index + n as u64 {
                return Err(StorageError::LogGap {
                    index: *index,
                    last: first_index + n as u64 - 1,
                });
            }
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|len| *len <= RECORD_PAYLOAD_MAX)
                .ok_or(StorageError::EntryTooLarge(payload.len()))?;
            payload_lens.push(len);
        }
        let mut inner = self.lock();
        if inner.is_empty() {
            if *first_index != inner.next() {
                // Everything on disk is purged: start over at the new index
                // (a follower that installed a snapshot ahead of its log).
                self.remove_all(&mut inner)?;
                inner.first = *first_index;
                inner.purged_below = *first_index;
            }
        } else if *first_index != inner.next() {
            return Err(StorageError::LogGap {
                index: *first_index,
                last: inner.next() - 1,
            });
        }
        let rolled = match inner.segments.last_key_value() {
            Some((_, newest)) => newest.len >= self.segment_bytes,
            None => true,
        };
        if rolled {
            self.start_segment(&mut inner, *first_index)?;
        }
        let (&segment_first, segment) = inner
            .segments
            .last_key_value()
            .expect("a segment was just ensured");
        let file = segment.file.clone();
        let start = segment.len;
        if let Err(e) = write_records(&file, &entries) {
            // Leave no half-written record where the next append goes.
            file.set_len(start)?;
            return Err(e);
        }
        let mut offset = start;
        for payload_len in payload_lens {
            inner.records.push_back(Position {
                segment: segment_first,
                offset,
                payload_len,
            });
            offset += HEADER_BYTES + u64::from(payload_len);
        }
        inner
            .segments
            .get_mut(&segment_first)
            .expect("the segment written to")
            .len = offset;
        drop(inner);
        // Appends come from one task (openraft's log writer), so nothing
        // else writes while the lock is released; readers go on meanwhile.
        file.sync_data()?;
        if rolled {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Syncs the newest segment and starts a new one at `first_index`.
    fn start_segment(&self, inner: &mut Inner, first_index: u64) -> Result<(), StorageError> {
        if let Some((_, newest)) = inner.segments.last_key_value() {
            newest.file.sync_data()?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(segment_path(&self.dir, first_index))?;
        inner.segments.insert(
            first_index,
            Segment {
                file: Arc::new(file),
                len: 0,
            },
        );
        Ok(())
    }

    /// Deletes every segment, durably, so no purged record can reappear
    /// beside the entries that follow.
    fn remove_all(&self, inner: &mut Inner) -> Result<(), StorageError> {
        for first in std::mem::take(&mut inner.segments).into_keys() {
            std::fs::remove_file(segment_path(&self.dir, first))?;
        }
        inner.records.clear();
        sync_dir(&self.dir)
    }

    /// Entries with `from <= index < to`, in order.
    pub fn range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>, StorageError> {
        let inner = self.lock();
        let from = from.max(inner.purged_below);
        let to = to.min(inner.next());
        (from..to)
            .map(|index| inner.read(&self.dir, index))
            .collect()
    }

    pub fn last(&self) -> Result<Option<LogEntry>, StorageError> {
        let inner = self.lock();
        if inner.is_empty() {
            return Ok(None);
        }
        inner.read(&self.dir, inner.next() - 1).map(Some)
    }

    /// Removes the entries with `index >= from`, durably.
    pub fn truncate(&self, from: u64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if from >= inner.next() {
            return Ok(());
        }
        let keep = from.saturating_sub(inner.first) as usize;
        inner.records.truncate(keep);
        inner.purged_below = inner.purged_below.min(inner.next());
        let Some(last) = inner.records.back().copied() else {
            return self.remove_all(&mut inner);
        };
        let later: Vec<u64> = inner
            .segments
            .range(last.segment + 1..)
            .map(|(first, _)| *first)
            .collect();
        for first in &later {
            inner.segments.remove(first);
            std::fs::remove_file(segment_path(&self.dir, *first))?;
        }
        let end = last.offset + HEADER_BYTES + u64::from(last.payload_len);
        let segment = inner
            .segments
            .get_mut(&last.segment)
            .expect("a record's segment");
        segment.file.set_len(end)?;
        segment.file.sync_data()?;
        segment.len = end;
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Hides the entries with `index <= upto` from `range` and `last`.
    /// Their records stay on disk until `release` lets them go: the log is
    /// the body store, and entries behind a snapshot may still hold the
    /// bodies of retained messages. A crash may undo it, so the caller
    /// records the purge point first and purges again on restart.
    pub fn purge(&self, upto: u64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.purged_below = upto.saturating_add(1).max(inner.purged_below);
        Ok(())
    }

    /// Deletes every segment whose records all lie below `below` and are
    /// purged: whole segments, oldest first; the newest stays, it takes the
    /// appends. Returns how many segments went.
    pub fn release(&self, below: u64) -> Result<usize, StorageError> {
        let mut inner = self.lock();
        let below = below.min(inner.purged_below);
        let firsts: Vec<u64> = inner.segments.keys().copied().collect();
        let mut released = 0;
        for pair in firsts.windows(2) {
            if pair[1] > below {
                break;
            }
            inner.segments.remove(&pair[0]);
            std::fs::remove_file(segment_path(&self.dir, pair[0]))?;
            let gone = (pair[1].saturating_sub(inner.first) as usize).min(inner.records.len());
            inner.records.drain(..gone);
            inner.first += gone as u64;
            released += 1;
        }
        if released > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(released)
    }

    /// The record at `index` if it is still on disk, purged or not: a
    /// body's entry behind the snapshot is read from here.
    pub fn get(&self, index: u64) -> Result<Option<LogEntry>, StorageError> {
        let inner = self.lock();
        if index < inner.first || index >= inner.next() {
            return Ok(None);
        }
        inner.read(&self.dir, index).map(Some)
    }

    /// Bytes of the segments `release(below)` would delete, were the log
    /// purged that far.
    pub fn bytes_before(&self, below: u64) -> u64 {
        let inner = self.lock();
        let firsts: Vec<(u64, u64)> = inner.segments.iter().map(|(f, s)| (*f, s.len)).collect();
        firsts
            .windows(2)
            .take_while(|pair| pair[1].0 <= below)
            .map(|pair| pair[0].1)
            .sum()
    }

    /// The first index on disk and the index the next append must have.
    pub fn bounds(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.first, inner.next())
    }
}

impl Inner {
    /// The index the next append must have.
    fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    fn is_empty(&self) -> bool {
        self.purged_below >= self.next()
    }

    fn read(&self, dir: &Path, index: u64) -> Result<LogEntry, StorageError> {
        let position = self.records[(index - self.first) as usize];
        let segment = &self.segments[&position.segment];
        // Header and payload apart: the payload is read straight into the
        // buffer returned (entries are up to 4 MiB, read for every
        // follower).
        let mut head = [0; HEADER_BYTES as usize];
        segment.file.read_exact_at(&mut head, position.offset)?;
        let mut payload = vec![0; position.payload_len as usize];
        segment
            .file
            .read_exact_at(&mut payload, position.offset + HEADER_BYTES)?;
        if head != header(index, &payload) {
            return Err(corrupt(
                &segment_path(dir, position.segment),
                position.offset,
                "a record changed on disk",
            ));
        }
        Ok((index, payload))
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

fn header(index: u64, payload: &[u8]) -> [u8; HEADER_BYTES as usize] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&index.to_le_bytes());
    crc.update(payload);
    let mut header = [0; HEADER_BYTES as usize];
    header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    header[8..16].copy_from_slice(&index.to_le_bytes());
    header
}

/// Reads a segment's records: their positions, for indexes from `first` on,
/// and the length of the valid prefix (shorter than the file when its tail
/// is damaged).
fn scan(file: &File, first: u64, path: &Path) -> Result<(Vec<Position>, u64), StorageError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut positions = Vec::new();
    let mut offset = 0;
    loop {
        let mut head = [0; HEADER_BYTES as usize];
        if !read_full(&mut reader, &mut head)? {
            break;
        }
        let payload_len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
        let index = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        if payload_len > RECORD_PAYLOAD_MAX {
            break;
        }
        let mut payload = vec![0; payload_len as usize];
        if !read_full(&mut reader, &mut payload)? || head != header(index, &payload) {
            break;
        }
        let expected = first + positions.len() as u64;
        if index != expected {
            return Err(corrupt(
                path,
                offset,
                &format!("index {index} where {expected} belongs"),
            ));
        }
        positions.push(Position {
            segment: first,
            offset,
            payload_len,
        });
        offset += HEADER_BYTES + u64::from(payload_len);
    }
    Ok((positions, offset))
}

fn write_records(file: &File, entries: &[LogEntry]) -> Result<(), StorageError> {
    let mut writer = BufWriter::with_capacity(64 * 1024, file);
    for (index, payload) in entries {
        writer.write_all(&header(*index, payload))?;
        writer.write_all(payload)?;
    }
    writer.flush()?;
    Ok(())
}

/// Fills `buf`; false at a clean or torn end of file.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<bool, StorageError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Makes creations and deletions of segment files durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn corrupt(path: &Path, offset: u64, what: &str) -> StorageError {
    StorageError::Corrupt(format!("{} at byte {offset}: {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small segments, so a few entries span several files.
    const SMALL: u64 = 64;

    fn entries(indexes: std::ops::Range<u64>) -> Vec<LogEntry> {
        indexes
            .map(|i| (i, format!("entry {i}").into_bytes()))
            .collect()
    }

    fn all(log: &SegmentLog) -> Vec<LogEntry> {
        log.range(0, u64::MAX).expect("read")
    }

    /// A log of small segments, an append per entry: several segments.
    fn one_per_append(dir: &Path, indexes: std::ops::Range<u64>) -> SegmentLog {
        let log = SegmentLog::open(dir, SMALL).expect("open");
        for i in indexes {
            log.append(entries(i..i + 1)).expect("append");
        }
        log
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|d| d.expect("dirent").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn entries_survive_reopening_across_segments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = SegmentLog::open(dir.path(), SMALL).expect("open");
        for batch in [1..4, 4..5, 5..9] {
            log.append(entries(batch)).expect("append");
        }
        assert!(segment_files(dir.path()).len() > 1, "segments rolled");
        drop(log);
        let log = SegmentLog::open(dir.path(), SMALL).expect("reopen");
        assert_eq!(all(&log), entries(1..9));
        assert_eq!(log.range(3, 5).expect("read"), entries(3..5));
        assert_eq!(log.range(2, 4).expect("read"), entries(2..4));
        assert_eq!(log.last().expect("last"), Some((8, b"entry 8".to_vec())));
        log.append(entries(9..10)).expect("append after reopen");
        assert!(matches!(
            log.append(entries(11..12)),
            Err(StorageError::LogGap { index: 11, last: 9 })
        ));
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = SegmentLog::open(dir.path(), 1 << 20).expect("open");
        log.append(entries(1..4)).expect("append");
        drop(log);
        // A crash in the middle of the next append: half a record.
        let path = segment_path(dir.path(), 1);
        let intact = std::fs::metadata(&path).expect("stat").len();
        let record = [header(4, b"entry 4").as_slice(), b"entry 4"].concat();
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&record[..record.len() - 3]).expect("write");
        drop(file);

        let log = SegmentLog::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), intact);
        assert_eq!(all(&log), entries(1..4));
        log.append(entries(4..6)).expect("append");
        drop(log);
        let log = SegmentLog::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(all(&log), entries(1..6));
    }

    #[test]
    fn damage_before_the_newest_segment_refuses_to_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = one_per_append(dir.path(), 1..6);
        drop(log);
        let oldest = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&oldest).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&oldest, bytes).expect("write");
        match SegmentLog::open(dir.path(), SMALL) {
            Err(StorageError::Corrupt(what)) => assert!(what.contains("damaged"), "{what}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a damaged log"),
        }
    }

    #[test]
    fn truncation_cuts_across_segments_durably() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = one_per_append(dir.path(), 1..10);
        let before = segment_files(dir.path()).len();
        log.truncate(4).expect("truncate");
        assert!(
            segment_files(dir.path()).len() < before,
            "later segments deleted"
        );
        assert_eq!(all(&log), entries(1..4));
        log.append(vec![(4, b"new 4".to_vec())]).expect("append");
        drop(log);
        let log = SegmentLog::open(dir.path(), SMALL).expect("reopen");
        let mut expected = entries(1..4);
        expected.push((4, b"new 4".to_vec()));
        assert_eq!(all(&log), expected);
        log.truncate(1).expect("truncate everything");
        assert_eq!(log.last().expect("last"), None);
        assert!(segment_files(dir.path()).is_empty());
        log.append(entries(1..3)).expect("append");
        assert_eq!(all(&log), entries(1..3));
    }

    #[test]
    fn purging_hides_entries_and_release_deletes_whole_segments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = one_per_append(dir.path(), 1..10);
        let before = segment_files(dir.path());
        log.purge(5).expect("purge");
        assert_eq!(all(&log), entries(6..10));
        // Purged entries stay readable one by one until released.
        assert_eq!(log.get(2).expect("get"), Some((2, b"entry 2".to_vec())));
        assert_eq!(segment_files(dir.path()), before, "purging deletes nothing");
        // Segments hold three entries each here ([1, 3], [4, 6], [7, 9]):
        // released below 3, the first still holds 3 and stays; below 4 it
        // goes, and nothing from 4 on.
        log.release(3).expect("release");
        assert_eq!(log.get(2).expect("get"), Some((2, b"entry 2".to_vec())));
        log.release(4).expect("release");
        assert_eq!(log.get(3).expect("get"), None);
        assert_eq!(log.get(4).expect("get"), Some((4, b"entry 4".to_vec())));
        // Released past the purge point: stops at the purge point.
        log.release(u64::MAX).expect("release");
        assert_eq!(all(&log), entries(6..10));
        let after = segment_files(dir.path());
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        assert_eq!(log.get(6).expect("get"), Some((6, b"entry 6".to_vec())));
        // Reopening without the purge point shows only what is on disk,
        // which still starts at or before it; purging again hides the rest.
        drop(log);
        let log = SegmentLog::open(dir.path(), SMALL).expect("reopen");
        assert!(all(&log).first().expect("entries").0 <= 6);
        log.purge(5).expect("purge again");
        assert_eq!(all(&log), entries(6..10));

        // A follower that installed a snapshot ahead of its log.
        log.purge(20).expect("purge all");
        log.release(u64::MAX).expect("release");
        assert_eq!(log.last().expect("last"), None);
        log.append(entries(21..23)).expect("append ahead");
        assert_eq!(segment_files(dir.path()), vec![format!("{:020}.seg", 21)]);
        drop(log);
        let log = SegmentLog::open(dir.path(), SMALL).expect("reopen");
        assert_eq!(all(&log), entries(21..23));
    }
}
