//! The production `Disk`: small records in sled, the Raft log in segment
//! files, the snapshot in a file of its own, imports in `imports/`.
//!
//! Large values stay out of sled: it rewrites the leaf node that holds a
//! value, and a large insert holds up the small ones behind it (a 200 MB
//! snapshot stalled every commit-point write for two seconds).

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::imports::Imports;
use super::segment_log::SegmentLog;
use super::snapshot_data::FILE_BUFFER_BYTES;
use super::{Disk, LogEntry, SnapshotData, StorageError, WriteSnapshot};

/// The log starts a new segment file past this size; releasing frees disk a
/// segment at a time, so an acknowledged backlog leaves at most one behind.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

pub struct LocalDisk {
    /// Kept for `flush`: sled syncs the whole database, not a tree.
    db: sled::Db,
    records: sled::Tree,
    log: SegmentLog,
    imports: Imports,
    dir: PathBuf,
}

const SNAPSHOT_FILE: &str = "raft-snapshot";
const SNAPSHOT_TEMP: &str = "raft-snapshot.tmp";
/// A large snapshot is synced a chunk at a time, so log syncs queue behind
/// at most a chunk: written whole, a 200 MB snapshot held them up for a
/// second.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

impl LocalDisk {
    /// Opens (or creates) the records in `dir`, the log in `dir/log` and
    /// the snapshot in `dir/raft-snapshot`. sled's background flusher is
    /// off: records are durable only when the Raft layer flushes, and it
    /// does so before it reports anything persisted (STACK.md).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()?;
        // The tree of earlier formats, so their format record is found.
        let records = db.open_tree("meta")?;
        let log = SegmentLog::open(&dir.join("log"), SEGMENT_BYTES)?;
        let imports = Imports::open(&dir.join("imports"))?;
        Ok(LocalDisk {
            db,
            records,
            log,
            imports,
            dir: dir.to_path_buf(),
        })
    }
}

impl Disk for LocalDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.records.get(key)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), StorageError> {
        self.records.insert(key, value)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    fn append(&self, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        self.log.append(entries)
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<LogEntry>, StorageError> {
        self.log.range(from, to)
    }

    fn last_entry(&self) -> Result<Option<LogEntry>, StorageError> {
        self.log.last()
    }

    fn truncate(&self, from: u64) -> Result<(), StorageError> {
        self.log.truncate(from)
    }

    fn purge(&self, upto: u64) -> Result<(), StorageError> {
        self.log.purge(upto)
    }

    fn release(&self, below: u64) -> Result<(), StorageError> {
        self.log.release(below)?;
        self.imports.release(below)
    }

    fn log_bytes_before(&self, below: u64) -> u64 {
        self.log.bytes_before(below) + self.imports.bytes_before(below)
    }

    fn entry(&self, index: u64) -> Result<Option<LogEntry>, StorageError> {
        self.log.get(index)
    }

    fn import(&self, id: &str, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        self.imports.import(id, entries)
    }

    fn seal_import(&self, id: &str, from: u64, to: u64) -> bool {
        self.imports.seal(id, from, to)
    }

    fn keep_import(&self, id: &str) -> Result<(), StorageError> {
        self.imports.keep(id)
    }

    fn imported(&self, index: u64) -> Result<Option<LogEntry>, StorageError> {
        self.imports.get(index)
    }

    /// `meta length: u64 | meta | data`, written beside the old snapshot
    /// as it is encoded, synced a chunk at a time, then renamed over it.
    fn save_snapshot(&self, meta: &[u8], data: WriteSnapshot<'_>) -> Result<(), StorageError> {
        let temp = self.dir.join(SNAPSHOT_TEMP);
        let mut file = ChunkSynced::new(File::create(&temp)?);
        file.write_all(&(meta.len() as u64).to_le_bytes())?;
        file.write_all(meta)?;
        data(&mut file)?;
        file.finish()?;
        std::fs::rename(&temp, self.dir.join(SNAPSHOT_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(Vec<u8>, SnapshotData)>, StorageError> {
        let mut file = match File::open(self.dir.join(SNAPSHOT_FILE)) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        let mut meta_len = [0; 8];
        let meta_len = file
            .read_exact(&mut meta_len)
            .ok()
            .map(|()| u64::from_le_bytes(meta_len))
            .filter(|len| *len <= size.saturating_sub(8))
            .ok_or(StorageError::CorruptSnapshot("its meta length is wrong"))?;
        let mut meta = vec![0; meta_len as usize];
        file.read_exact(&mut meta)?;
        Ok(Some((meta, SnapshotData::file(file, 8 + meta_len))))
    }

    /// A file with no name, in the data directory so it can be large: a
    /// crash leaves nothing of it behind.
    fn receive_snapshot(&self) -> Result<SnapshotData, StorageError> {
        Ok(SnapshotData::file(tempfile::tempfile_in(&self.dir)?, 0))
    }

    fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.records.is_empty()
            && self.log.last()?.is_none()
            && !self.dir.join(SNAPSHOT_FILE).exists())
    }
}

/// A file written through a buffer and synced each time another
/// `SNAPSHOT_CHUNK_BYTES` have gone out, so that the log's syncs queue
/// behind at most a chunk of it.
struct ChunkSynced {
    file: BufWriter<File>,
    unsynced: usize,
}

impl ChunkSynced {
    fn new(file: File) -> Self {
        ChunkSynced {
            file: BufWriter::with_capacity(FILE_BUFFER_BYTES, file),
            unsynced: 0,
        }
    }

    /// Writes out and syncs what is left.
    fn finish(mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

impl Write for ChunkSynced {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(bytes)?;
        self.unsynced += written;
        if self.unsynced >= SNAPSHOT_CHUNK_BYTES {
            self.file.flush()?;
            self.file.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: u64 = 1 << 20;

    /// The snapshot's meta and data, read whole.
    fn loaded(disk: &LocalDisk) -> Option<(Vec<u8>, Vec<u8>)> {
        let (meta, data) = disk.load_snapshot().expect("load")?;
        let mut bytes = Vec::new();
        data.into_reader()
            .expect("reader")
            .read_to_end(&mut bytes)
            .expect("read");
        Some((meta, bytes))
    }

    #[test]
    fn a_snapshot_replaces_the_last_one_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = LocalDisk::open(dir.path(), CACHE).expect("open");
        assert!(disk.is_empty().expect("is_empty"));
        assert_eq!(loaded(&disk), None);
        let big = vec![7; 3 * SNAPSHOT_CHUNK_BYTES + 5];
        disk.save_snapshot(b"meta 1", &mut |out| {
            // As an encoder writes: many small pieces.
            big.chunks(1000).try_for_each(|piece| out.write_all(piece))
        })
        .expect("save");
        assert_eq!(loaded(&disk), Some((b"meta 1".to_vec(), big)));
        disk.save_snapshot(b"meta 2", &mut |out| out.write_all(b"data 2"))
            .expect("save");
        drop(disk);

        // sled's own threads may hold the dropped database's file lock a
        // moment longer (seen once in a full test run): retry, bounded.
        let disk = (0..50)
            .find_map(|_| {
                LocalDisk::open(dir.path(), CACHE)
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("reopen within a second");
        assert_eq!(
            loaded(&disk),
            Some((b"meta 2".to_vec(), b"data 2".to_vec()))
        );
        assert!(!disk.is_empty().expect("is_empty"));
        assert!(!dir.path().join(SNAPSHOT_TEMP).exists());
    }

    /// A snapshot is received into a file with no name, saved from it, and
    /// leaves no file behind but the snapshot's own.
    #[tokio::test]
    async fn a_received_snapshot_is_saved_from_its_file() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = LocalDisk::open(dir.path(), CACHE).expect("open");
        let files = || std::fs::read_dir(dir.path()).expect("read dir").count();
        let before = files();
        let mut received = disk.receive_snapshot().expect("receive");
        let big = vec![9; 2 * SNAPSHOT_CHUNK_BYTES + 3];
        received.write_all(&big).await.expect("write");
        received.shutdown().await.expect("shutdown");
        assert_eq!(files(), before, "the received data has no name");
        let mut from = received.into_reader().expect("reader");
        disk.save_snapshot(b"meta", &mut |out| std::io::copy(&mut from, out).map(drop))
            .expect("save");
        assert_eq!(loaded(&disk), Some((b"meta".to_vec(), big)));
        assert_eq!(files(), before + 1, "only the snapshot's file");
    }

    #[test]
    fn a_damaged_snapshot_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = LocalDisk::open(dir.path(), CACHE).expect("open");
        for damaged in [&b"abc"[..], &u64::MAX.to_le_bytes()[..]] {
            std::fs::write(dir.path().join(SNAPSHOT_FILE), damaged).expect("write");
            assert!(matches!(
                disk.load_snapshot(),
                Err(StorageError::CorruptSnapshot(_))
            ));
        }
    }
}
