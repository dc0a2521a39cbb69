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
    /// The trace file cannot be created.
    #[error("cannot create the trace {}: {source}", .path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: std::io::Error,
    },
    /// The header cannot be encoded.
    #[error("the trace's header cannot be encoded: {0}")]
    EncodeHeader(#[source] CodecError),
    /// The trace file cannot be written.
    #[error("cannot write the trace {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: std::io::Error,
    },
    /// The trace file cannot be opened.
    #[error("cannot open the trace {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: std::io::Error,
    },
    /// The trace file cannot be read.
    #[error("cannot read {} at byte {offset}: {source}", Name(.path))]
    Read {
        /// The file, if the trace is one.
        path: Option<PathBuf>,
        /// The byte offset in the file.
        offset: u64,
        /// The error underneath.
        source: std::io::Error,
    },
    /// The trace is empty.
    #[error("the trace is empty")]
    Empty,
    /// It is not a trace (no FTVMTRC magic).
    #[error("not an ftvm trace: it does not start with FTVMTRC")]
    BadMagic,
    /// A format version this ftvm does not read.
    #[error("trace format version {found} is not supported; this ftvm reads version {supported}")]
    UnsupportedVersion {
        /// The trace's version.
        found: u32,
        /// The version this ftvm reads.
        supported: u32,
    },
    /// The trace ends before its end record.
    #[error("truncated at byte {offset} in {}: the trace has no end record", RecordName(*.record))]
    Truncated {
        /// The number of the record cut off.
        record: u64,
        /// Where.
        offset: u64,
    },
    /// A record that does not decode.
    #[error("{} at byte {offset}: {source}", RecordName(*.record))]
    Corrupt {
        /// The number of the record (0 is the header).
        record: u64,
        /// The byte offset in the file.
        offset: u64,
        /// The error underneath.
        source: CodecError,
    },
    /// The header's kernel does not hash to the SHA-256 it records.
    #[error(
        "the header's kernel does not match its SHA-256: recorded {}, the kernel hashes to {}",
        hex(.recorded),
        hex(.actual)
    )]
    KernelMismatch {
        /// The SHA-256 recorded.
        recorded: [u8; 32],
        /// The kernel's SHA-256.
        actual: [u8; 32],
    },
    /// Bytes follow the end record.
    #[error("data follows the end record, from byte {offset}")]
    TrailingData {
        /// Where they start.
        offset: u64,
    },
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
