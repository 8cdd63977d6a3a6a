//! A snapshot's data as openraft streams it: sent a chunk at a time from
//! the snapshot file, received a chunk at a time into a file of its own,
//! so neither side ever holds the whole state in one buffer (71 MB at
//! 5,000,000 retained messages). The simulated disk keeps it in memory.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// The encoder writes a field at a time, the decoder reads one: the file
/// sees reads and writes this large.
pub(super) const FILE_BUFFER_BYTES: usize = 64 * 1024;

/// Snapshot data: openraft's `SnapshotData`, and what `Disk` hands out.
pub enum SnapshotData {
    Memory(Cursor<Vec<u8>>),
    File(FileWindow),
}

/// The part of a file from `start` to its end, positions counted from
/// `start`: the snapshot file begins with its meta, which openraft does
/// not send.
pub struct FileWindow {
    file: tokio::fs::File,
    start: u64,
}

impl SnapshotData {
    /// The file's bytes from `start` on.
    pub fn file(file: std::fs::File, start: u64) -> Self {
        SnapshotData::File(FileWindow {
            file: tokio::fs::File::from_std(file),
            start,
        })
    }

    /// Reads the data from its start, blocking: for decoding, which is
    /// done off the async runtime. Fails if an async read or write is
    /// still under way, which openraft has finished before it hands the
    /// data over.
    pub fn into_reader(self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            SnapshotData::Memory(mut bytes) => {
                bytes.set_position(0);
                Ok(Box::new(bytes))
            }
            SnapshotData::File(FileWindow { file, start }) => {
                let mut file = file.try_into_std().map_err(|_| {
                    io::Error::other("the snapshot file is still being read or written")
                })?;
                file.seek(SeekFrom::Start(start))?;
                Ok(Box::new(io::BufReader::with_capacity(
                    FILE_BUFFER_BYTES,
                    file,
                )))
            }
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(bytes) => Pin::new(bytes).poll_read(cx, buf),
            SnapshotData::File(window) => Pin::new(&mut window.file).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Memory(memory) => Pin::new(memory).poll_write(cx, bytes),
            SnapshotData::File(window) => Pin::new(&mut window.file).poll_write(cx, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(memory) => Pin::new(memory).poll_flush(cx),
            SnapshotData::File(window) => Pin::new(&mut window.file).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Memory(memory) => Pin::new(memory).poll_shutdown(cx),
            SnapshotData::File(window) => Pin::new(&mut window.file).poll_shutdown(cx),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            SnapshotData::Memory(memory) => Pin::new(memory).start_seek(position),
            SnapshotData::File(FileWindow { file, start }) => {
                let position = match position {
                    SeekFrom::Start(offset) => SeekFrom::Start(*start + offset),
                    relative => relative,
                };
                Pin::new(file).start_seek(position)
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Memory(memory) => Pin::new(memory).poll_complete(cx),
            SnapshotData::File(FileWindow { file, start }) => {
                let start = *start;
                Pin::new(file)
                    .poll_complete(cx)
                    .map_ok(|position| position.saturating_sub(start))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    /// Positions in a window count from its start, whichever way it is
    /// sought (openraft seeks to the end for the size, then to each
    /// chunk's offset), and the blocking reader starts there too.
    #[tokio::test]
    async fn a_file_window_hides_what_comes_before_its_start() {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"meta:0123456789").expect("write");
        let mut data = SnapshotData::file(file, 5);
        assert_eq!(data.seek(SeekFrom::End(0)).await.expect("seek"), 10);
        assert_eq!(data.seek(SeekFrom::Start(4)).await.expect("seek"), 4);
        let mut chunk = [0; 3];
        data.read_exact(&mut chunk).await.expect("read");
        assert_eq!(&chunk, b"456");
        assert_eq!(data.seek(SeekFrom::Current(1)).await.expect("seek"), 8);

        let mut all = Vec::new();
        data.into_reader()
            .expect("reader")
            .read_to_end(&mut all)
            .expect("read");
        assert_eq!(all, b"0123456789");
    }

    /// Received as openraft writes it, chunk by chunk at their offsets,
    /// the data reads back whole, in a file or in memory.
    #[tokio::test]
    async fn received_chunks_read_back_whole() {
        let file = tempfile::tempfile().expect("temp file");
        for mut data in [
            SnapshotData::file(file, 0),
            SnapshotData::Memory(Cursor::default()),
        ] {
            for (offset, chunk) in [(0, &b"abc"[..]), (3, b"def"), (3, b"def"), (6, b"g")] {
                data.seek(SeekFrom::Start(offset)).await.expect("seek");
                data.write_all(chunk).await.expect("write");
            }
            data.shutdown().await.expect("shutdown");
            let mut all = Vec::new();
            data.into_reader()
                .expect("reader")
                .read_to_end(&mut all)
                .expect("read");
            assert_eq!(all, b"abcdefg");
        }
    }
}
