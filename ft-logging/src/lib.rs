//! The records of ftvm's log and the interfaces they flow through.
//!
//! The guest and its devices are a pure function of (initial image, config,
//! event log). Every nondeterministic input enters the deterministic core
//! through an [`EventSource`] at a numbered exit, and every output leaves
//! through an [`OutputSink`]. The modes of ftvm (run, record, replay,
//! primary, backup) are pairs of these.

#![warn(missing_docs)]

pub mod channel;
mod codec;
mod digest;
mod disk;
mod event;
mod record;
mod signature;
mod sink;
mod source;

pub use codec::{
    CodecError, Decoded, Decoder, Encoder, MAX_HEADER_FRAME, MAX_RECORD_FRAME, decode_header,
    encode_header,
};
pub use digest::StreamHasher;
pub use disk::{DiskInfo, DiskOp, DiskRequest, NetInfo, STATUS_IOERR, STATUS_OK, STATUS_UNSUPP};
pub use event::{Event, MSR_TSC};
pub use record::{
    CpuidLeaf, End, EndReason, FORMAT_VERSION, Header, Record, StateDigest, Stream, StreamDigest,
};
pub use signature::ExitSignature;
pub use sink::{NullSink, OutputSink, SinkError};
pub use source::{EventSource, ExitDone, ExitQuery, SourceError, StopReason};
