//! Writing a trace file: the header at creation, then records as they
//! come, buffered, synced to disk at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ft_logging::{Encoder, FORMAT_VERSION, Header, Record, encode_header};
use tracing::debug;

use super::{MAGIC, TraceError};

/// Records reach the file in writes of this size, not one per record.
const BUFFER: usize = 64 << 10;

/// Writes a trace file: the header at creation, then one record at a time.
/// Without [`finish`](Self::finish), buffered records may be lost.
pub struct TraceWriter {
    file: BufWriter<File>,
    path: PathBuf,
    encoder: Encoder,
    /// One encoded record, kept to reuse its allocation.
    frame: Vec<u8>,
    records: u64,
    /// Told the size of every record written.
    on_write: Option<Box<dyn FnMut(u64) + Send>>,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("path", &self.path)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl TraceWriter {
    /// Creates (or truncates) the file at `path` and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, TraceError> {
        let mut start = MAGIC.to_vec();
        start.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Before creating the file, so a refused header leaves none behind.
        encode_header(header, &mut start).map_err(TraceError::EncodeHeader)?;
        let file = File::create(path).map_err(|source| TraceError::Create {
            path: path.to_owned(),
            source,
        })?;
        let mut file = BufWriter::with_capacity(BUFFER, file);
        file.write_all(&start)
            .map_err(|source| write_error(path, source))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            encoder: Encoder::new(),
            frame: Vec::new(),
            records: 0,
            on_write: None,
        })
    }

    /// Tells `count` the size in bytes of every record written from now on.
    pub fn on_write(&mut self, count: Box<dyn FnMut(u64) + Send>) {
        self.on_write = Some(count);
    }

    /// Appends one record; the End record is the last.
    pub fn write(&mut self, record: &Record) -> Result<(), TraceError> {
        self.frame.clear();
        self.encoder.encode(record, &mut self.frame);
        self.file
            .write_all(&self.frame)
            .map_err(|source| write_error(&self.path, source))?;
        self.records += 1;
        if let Some(count) = &mut self.on_write {
            count(self.frame.len() as u64);
        }
        Ok(())
    }

    /// Writes out the buffered records and waits until the file is on disk.
    pub fn finish(mut self) -> Result<(), TraceError> {
        let path = &self.path;
        self.file
            .flush()
            .map_err(|source| write_error(path, source))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|source| write_error(path, source))?;
        debug!(path = %self.path.display(), records = self.records, "trace written");
        Ok(())
    }
}

fn write_error(path: &Path, source: std::io::Error) -> TraceError {
    TraceError::Write {
        path: path.to_owned(),
        source,
    }
}
