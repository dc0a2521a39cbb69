//! Trace files and the recording and replaying event sources (see
//! docs/DESIGN.md §2).
//!
//! `ftvm record` wraps the live source in a [`Recorder`], which writes
//! every input with the exit signature after its exit, periodic console
//! and state digests, and the end record to a [`TraceWriter`]. `ftvm
//! replay` reads the trace back through a [`TraceReader`] into a
//! [`ReplaySource`], which hands the core the recorded inputs at their
//! exits and reports the first place where the replay differs.

#![warn(missing_docs)]

mod describe;
mod inspect;
mod recorder;
mod replay_source;
mod trace;

pub use inspect::{CheckpointSummary, KindCount, RecordKind, TraceSummary, inspect};
pub use recorder::Recorder;
pub use replay_source::{RecordStream, ReplaySource};
pub use trace::{MAGIC, Position, TraceError, TraceReader, TraceWriter};
