//! Reading a trace file: its header, then its records one at a time, each
//! checked, with the position of any damage.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ft_logging::{Decoded, Decoder, FORMAT_VERSION, Header, Record, decode_header};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::{MAGIC, PREAMBLE_LEN, TraceError};

/// Bytes asked of the input at a time.
const CHUNK: usize = 64 << 10;

/// Where a reader is in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The last record read; the header is record 0.
    pub record: u64,
    /// Bytes consumed: the offset of the next record.
    pub offset: u64,
}

/// Reads a trace file: checks its magic, version and header on opening,
/// then yields its records up to and including the End record.
#[derive(Debug)]
pub struct TraceReader<R> {
    input: Input<R>,
    header: Header,
    decoder: Decoder,
    record: u64,
    ended: bool,
}

impl TraceReader<BufReader<File>> {
    /// Opens the trace at `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let open_error = |source| TraceError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        Self::start(BufReader::new(file), Some(path.to_owned()))
    }

    /// Opens the trace at `path` to read on from `start`: the position just
    /// before a checkpoint's closing record, which holds what the reader
    /// needs to decode on from there.
    pub fn open_at(path: &Path, start: Position) -> Result<Self, TraceError> {
        let mut reader = Self::open(path)?;
        let input = &mut reader.input;
        input
            .reader
            .seek(SeekFrom::Start(start.offset))
            .map_err(|source| TraceError::Read {
                path: Some(path.to_owned()),
                offset: start.offset,
                source,
            })?;
        input.buf.clear();
        input.start = 0;
        input.offset = start.offset;
        reader.record = start.record;
        reader.decoder = Decoder::at_checkpoint();
        Ok(reader)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads the magic, version and header of the trace `input` holds.
    pub fn new(input: R) -> Result<Self, TraceError> {
        Self::start(input, None)
    }

    fn start(input: R, path: Option<PathBuf>) -> Result<Self, TraceError> {
        let mut input = Input {
            reader: input,
            path,
            buf: Vec::new(),
            start: 0,
            offset: 0,
        };
        read_preamble(&mut input)?;
        let header = read_header(&mut input)?;
        debug!(
            platform = header.platform,
            kernel = header.kernel_name,
            header_bytes = input.offset,
            "trace header read"
        );
        Ok(Self {
            input,
            header,
            decoder: Decoder::new(),
            record: 0,
            ended: false,
        })
    }

    /// The trace's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next record; `None` once the End record has been returned. The
    /// End record is returned only if nothing follows it.
    pub fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        if self.ended {
            return Ok(None);
        }
        let record = self.record + 1;
        loop {
            match self.decoder.decode(self.input.pending()) {
                Ok(Decoded::Record(decoded, len)) => {
                    self.input.consume(len);
                    self.record = record;
                    if matches!(decoded, Record::End(_)) {
                        self.ended = true;
                        self.input.expect_eof()?;
                    }
                    return Ok(Some(decoded));
                }
                Ok(Decoded::Incomplete) => {
                    if !self.input.fill()? {
                        return Err(TraceError::Truncated {
                            record,
                            offset: self.input.end(),
                        });
                    }
                }
                Err(source) => {
                    return Err(TraceError::Corrupt {
                        record,
                        offset: self.input.offset,
                        source,
                    });
                }
            }
        }
    }

    /// Where the reader is in the file.
    pub fn position(&self) -> Position {
        Position {
            record: self.record,
            offset: self.input.offset,
        }
    }
}

fn read_preamble<R: Read>(input: &mut Input<R>) -> Result<(), TraceError> {
    while input.pending().len() < PREAMBLE_LEN && input.fill()? {}
    let start = input.pending();
    if start.is_empty() {
        return Err(TraceError::Empty);
    }
    let magic = start.len().min(MAGIC.len());
    if start[..magic] != MAGIC[..magic] {
        return Err(TraceError::BadMagic);
    }
    let Some(version) = start.get(MAGIC.len()..PREAMBLE_LEN) else {
        return Err(TraceError::Truncated {
            record: 0,
            offset: input.end(),
        });
    };
    let found = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
    if found != FORMAT_VERSION {
        return Err(TraceError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        });
    }
    input.consume(PREAMBLE_LEN);
    Ok(())
}

fn read_header<R: Read>(input: &mut Input<R>) -> Result<Header, TraceError> {
    let header = loop {
        match decode_header(input.pending()) {
            Ok(Some((header, len))) => {
                input.consume(len);
                break header;
            }
            Ok(None) => {
                if !input.fill()? {
                    return Err(TraceError::Truncated {
                        record: 0,
                        offset: input.end(),
                    });
                }
            }
            Err(source) => {
                return Err(TraceError::Corrupt {
                    record: 0,
                    offset: input.offset,
                    source,
                });
            }
        }
    };
    let actual: [u8; 32] = Sha256::digest(&header.kernel).into();
    if actual != header.kernel_sha256 {
        return Err(TraceError::KernelMismatch {
            recorded: header.kernel_sha256,
            actual,
        });
    }
    Ok(header)
}

/// The bytes read from the trace and not yet consumed.
#[derive(Debug)]
struct Input<R> {
    reader: R,
    path: Option<PathBuf>,
    buf: Vec<u8>,
    /// `buf[start..]` is unconsumed.
    start: usize,
    /// The file offset of `buf[start]`.
    offset: u64,
}

impl<R: Read> Input<R> {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        self.offset += len as u64;
    }

    /// The offset just past the bytes read so far.
    fn end(&self) -> u64 {
        self.offset + self.pending().len() as u64
    }

    /// Reads more of the trace; false at its end.
    fn fill(&mut self) -> Result<bool, TraceError> {
        // Drop consumed bytes once they are the larger part, so a large
        // frame is not moved again at every read.
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(read) => {
                    self.buf.truncate(len + read);
                    return Ok(read > 0);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    self.buf.truncate(len);
                    return Err(TraceError::Read {
                        path: self.path.clone(),
                        offset: self.end(),
                        source,
                    });
                }
            }
        }
    }

    /// Refuses anything after the End record.
    fn expect_eof(&mut self) -> Result<(), TraceError> {
        if self.pending().is_empty() && !self.fill()? {
            Ok(())
        } else {
            Err(TraceError::TrailingData {
                offset: self.offset,
            })
        }
    }
}
