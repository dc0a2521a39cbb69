//! The records of ftvm's log and the interfaces they flow through.
//!
//! The guest and its devices are a pure function of (initial image, config,
//! event log). Every nondeterministic input enters the deterministic core
//! through an [`EventSource`] at a numbered exit, and every output leaves
//! through an [`OutputSink`]. The modes of ftvm (run, record, replay,
//! primary, backup) are pairs of these.

mod event;
mod signature;
mod sink;
mod source;

pub use event::{Event, MSR_TSC};
pub use signature::ExitSignature;
pub use sink::{OutputSink, SinkError};
pub use source::{EventSource, ExitQuery, SourceError, StopReason};
