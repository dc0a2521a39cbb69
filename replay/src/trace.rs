//! Trace files: the magic [`MAGIC`], the format version
//! ([`ft_logging::FORMAT_VERSION`], u32 little endian), the header frame,
//! the record frames with the End record last, then the end of the file.

mod reader;
mod writer;

use std::fmt;
use std::path::PathBuf;

use ft_logging::CodecError;

pub use reader::{Position, TraceReader};
pub use writer::TraceWriter;

/// The first bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"FTVMTRC\0";

/// Magic and version.
const PREAMBLE_LEN: usize = MAGIC.len() + 4;

/// Why a trace cannot be written or read. Every variant but the I/O ones
/// means the file is not a valid trace. Record 0 is the header.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot create the trace {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the trace's header cannot be encoded: {0}")]
    EncodeHeader(#[source] CodecError),
    #[error("cannot write the trace {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the trace {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {} at byte {offset}: {source}", Name(.path))]
    Read {
        path: Option<PathBuf>,
        offset: u64,
        source: std::io::Error,
    },
    #[error("the trace is empty")]
    Empty,
    #[error("not an ftvm trace: it does not start with FTVMTRC")]
    BadMagic,
    #[error("trace format version {found} is not supported; this ftvm reads version {supported}")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("truncated at byte {offset} in {}: the trace has no end record", RecordName(*.record))]
    Truncated { record: u64, offset: u64 },
    #[error("{} at byte {offset}: {source}", RecordName(*.record))]
    Corrupt {
        record: u64,
        offset: u64,
        source: CodecError,
    },
    #[error(
        "the header's kernel does not match its SHA-256: recorded {}, the kernel hashes to {}",
        hex(.recorded),
        hex(.actual)
    )]
    KernelMismatch {
        recorded: [u8; 32],
        actual: [u8; 32],
    },
    #[error("data follows the end record, from byte {offset}")]
    TrailingData { offset: u64 },
}

/// A record number as a message names it.
struct RecordName(u64);

impl fmt::Display for RecordName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("the header"),
            n => write!(f, "record {n}"),
        }
    }
}

/// A trace's path as a message names it.
struct Name<'a>(&'a Option<PathBuf>);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "the trace {}", path.display()),
            None => f.write_str("the trace"),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
