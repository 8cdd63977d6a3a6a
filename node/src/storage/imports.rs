//! Entries shipped with an installed snapshot: the bodies its retained
//! messages need, which this node's own log may lack (a wiped or far
//! behind follower). Each import is a segment log of its own, in
//! `imports/<snapshot id>/`, with the log's record format; one import is
//! read at a time, the one of the snapshot last installed.
//!
//! A follower receives the entries before the snapshot's metadata, into the
//! import named for it, then installs the snapshot and keeps its import. A
//! crash between those steps leaves the import on disk beside the saved
//! snapshot, and keeping it at the next start finds it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::segment_log::SegmentLog;
use super::{LogEntry, StorageError};

/// Imports start a new segment past this, and are released a segment at a
/// time as the messages in them are acknowledged.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Names the import read, across restarts.
const KEPT_FILE: &str = "KEPT";

pub struct Imports {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The import read, by its snapshot id's directory name.
    kept: Option<(String, SegmentLog)>,
    receiving: Option<Receiving>,
}

/// The import being received.
struct Receiving {
    name: String,
    log: SegmentLog,
    /// Its first index: a batch starting here starts it over.
    start: u64,
    /// Found whole (`seal`): nothing more is written to it.
    sealed: bool,
}

impl Imports {
    /// Opens the import kept last; others stay until `keep` decides.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let kept = match std::fs::read_to_string(dir.join(KEPT_FILE)) {
            Ok(name) if !name.is_empty() && dir.join(&name).is_dir() => {
                let log = open_import(&dir.join(&name))?;
                Some((name, log))
            }
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Imports {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                kept,
                receiving: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores entries shipped with snapshot `id`, synced. A batch follows
    /// the one before, or starts the import over at its first index (a
    /// sender that began again); any other is refused. Writes to an import
    /// already sealed or kept are ignored: they are late copies.
    pub fn import(&self, id: &str, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let Some(&(first, _)) = entries.first() else {
            return Ok(());
        };
        let name = dir_name(id);
        let mut inner = self.lock();
        if inner.kept.as_ref().is_some_and(|(kept, _)| *kept == name) {
            return Ok(());
        }
        let restart = match &inner.receiving {
            Some(receiving) if receiving.name == name => {
                if receiving.sealed {
                    return Ok(());
                }
                first == receiving.start
            }
            _ => true,
        };
        if restart {
            inner.receiving = None;
            let path = self.dir.join(&name);
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
            inner.receiving = Some(Receiving {
                name,
                log: open_import(&path)?,
                start: first,
                sealed: false,
            });
        }
        let receiving = inner.receiving.as_ref().expect("set above");
        let (_, next) = receiving.log.bounds();
        if !restart && first != next {
            return Err(StorageError::LogGap {
                index: first,
                last: next.saturating_sub(1),
            });
        }
        receiving.log.append(entries)?;
        receiving.log.purge(u64::MAX)
    }

    /// Whether the import of snapshot `id` holds every index in
    /// `from..=to`; once it does, it is sealed against late writes. An
    /// empty range needs no import.
    pub fn seal(&self, id: &str, from: u64, to: u64) -> bool {
        if from > to {
            return true;
        }
        let name = dir_name(id);
        let mut inner = self.lock();
        if inner.kept.as_ref().is_some_and(|(kept, _)| *kept == name) {
            return true;
        }
        match &mut inner.receiving {
            Some(receiving) if receiving.name == name => {
                let (first, next) = receiving.log.bounds();
                let whole = first <= from && to < next;
                receiving.sealed |= whole;
                whole
            }
            _ => false,
        }
    }

    /// Makes the import of snapshot `id` the one read, if there is one,
    /// and deletes every import but the one read. Durable on return.
    pub fn keep(&self, id: &str) -> Result<(), StorageError> {
        let name = dir_name(id);
        let mut inner = self.lock();
        let found = match inner.receiving.take() {
            // Only a whole one: an unsealed one is dropped with the others.
            Some(receiving) if receiving.name == name => receiving.sealed.then_some(receiving.log),
            // Received and sealed before a restart: the snapshot saved
            // with it names it.
            _ if inner.kept.as_ref().is_none_or(|(kept, _)| *kept != name)
                && self.dir.join(&name).is_dir() =>
            {
                Some(open_import(&self.dir.join(&name))?)
            }
            _ => None,
        };
        if let Some(log) = found {
            inner.kept = Some((name, log));
        }
        let kept = inner.kept.as_ref().map(|(name, _)| name.clone());
        let temp = self.dir.join(format!("{KEPT_FILE}.tmp"));
        std::fs::write(&temp, kept.as_deref().unwrap_or(""))?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, self.dir.join(KEPT_FILE))?;
        for dirent in std::fs::read_dir(&self.dir)? {
            let dirent = dirent?;
            let other = dirent.file_name().to_string_lossy().into_owned();
            if dirent.path().is_dir() && Some(&other) != kept.as_ref() {
                std::fs::remove_dir_all(dirent.path())?;
            }
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    /// The record at `index` in the import read.
    pub fn get(&self, index: u64) -> Result<Option<LogEntry>, StorageError> {
        match &self.lock().kept {
            Some((_, log)) => log.get(index),
            None => Ok(None),
        }
    }

    /// Deletes the kept import's segments wholly below `below`.
    /// Bytes of the kept import's segments wholly before entry `below`.
    pub fn bytes_before(&self, below: u64) -> u64 {
        self.lock()
            .kept
            .as_ref()
            .map_or(0, |(_, log)| log.bytes_before(below))
    }

    pub fn release(&self, below: u64) -> Result<(), StorageError> {
        if let Some((_, log)) = &self.lock().kept {
            log.release(below)?;
        }
        Ok(())
    }
}

fn open_import(path: &Path) -> Result<SegmentLog, StorageError> {
    let log = SegmentLog::open(path, SEGMENT_BYTES)?;
    // Imported records are bodies, never log entries to replay.
    log.purge(u64::MAX)?;
    Ok(log)
}

/// A directory name for a snapshot id: its letters and digits, the rest
/// as `_`.
fn dir_name(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(indexes: std::ops::Range<u64>, tag: u8) -> Vec<LogEntry> {
        indexes.map(|index| (index, vec![tag; 8])).collect()
    }

    #[test]
    fn an_import_is_read_only_once_whole_and_kept_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let imports = Imports::open(dir.path()).expect("open");
        imports.import("a", records(5..8, 1)).expect("import");
        // A gap is refused; a batch from the start begins again.
        assert!(matches!(
            imports.import("a", records(9..10, 1)),
            Err(StorageError::LogGap { index: 9, .. })
        ));
        imports.import("a", records(5..7, 2)).expect("again");
        imports.import("a", records(7..10, 2)).expect("import");
        // Not whole for 5..=12, whole for 5..=9; nothing read before kept.
        assert!(!imports.seal("a", 5, 12));
        assert!(imports.seal("a", 5, 9));
        assert_eq!(imports.get(6).expect("get"), None);
        // A late copy changes nothing once sealed.
        imports.import("a", records(5..6, 3)).expect("late copy");
        imports.keep("a").expect("keep");
        assert_eq!(imports.get(5).expect("get"), Some((5, vec![2; 8])));
        drop(imports);

        let imports = Imports::open(dir.path()).expect("reopen");
        assert_eq!(imports.get(9).expect("get"), Some((9, vec![2; 8])));
        // An import not whole is never kept: the kept one stays.
        imports.import("b", records(20..22, 4)).expect("import");
        imports.keep("b").expect("keep");
        assert_eq!(imports.get(20).expect("get"), None);
        assert_eq!(imports.get(9).expect("get"), Some((9, vec![2; 8])));
        assert!(!dir.path().join("b").exists(), "the partial one is deleted");
    }

    /// A node that rejoined by snapshot holds its bodies in the import: the
    /// snapshot rule by the disk and the compactor weigh it as log, and
    /// releasing frees its whole segments.
    #[test]
    fn the_kept_import_counts_in_what_a_release_frees() {
        const EIGHT_MIB: usize = 8 * 1024 * 1024;
        let dir = tempfile::tempdir().expect("temp dir");
        let imports = Imports::open(dir.path()).expect("open");
        // One batch each, as the bodies stream sends them: a segment closes
        // between batches once past its size.
        for index in 0..3 {
            let batch = vec![(index, vec![index as u8; EIGHT_MIB])];
            imports.import("a", batch).expect("import");
        }
        assert!(imports.seal("a", 0, 2));
        imports.keep("a").expect("keep");
        assert_eq!(imports.bytes_before(1), 0, "a segment still in use");
        let freed = imports.bytes_before(2);
        assert!(
            freed >= 2 * EIGHT_MIB as u64,
            "{freed} bytes before entry 2"
        );
        imports.release(2).expect("release");
        assert_eq!(imports.bytes_before(3), 0);
        assert_eq!(imports.get(2).expect("get").map(|(i, _)| i), Some(2));
        assert_eq!(imports.get(0).expect("get"), None);
    }
}
