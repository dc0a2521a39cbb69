//! The `OutputSink` interface: where everything the guest does to the
//! outside world leaves the deterministic core.

use crate::DiskRequest;

/// Where every output of the guest goes: the host (run, record), the host
/// once the backup acknowledged it (primary), or nowhere (replay, backup:
/// their outputs are checked through the digests the source sees).
pub trait OutputSink {
    /// Console bytes the guest transmitted at exit `exit`.
    fn console(&mut self, exit: u64, bytes: &[u8]) -> Result<(), SinkError>;

    /// A request of the guest's disk, made at exit `exit`; its completion
    /// comes back as an event.
    fn disk(&mut self, exit: u64, request: DiskRequest) -> Result<(), SinkError>;

    /// A frame the guest transmitted at exit `exit`.
    fn net(&mut self, exit: u64, frame: Vec<u8>) -> Result<(), SinkError>;

    /// The guest is about to wait or end: make what it wrote visible.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// Why an output could not leave.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The console cannot be written.
    #[error("cannot write the console: {0}")]
    Console(#[source] std::io::Error),
    /// The disk's I/O thread is gone.
    #[error("the disk's I/O thread is gone")]
    DiskGone,
    /// A frame cannot be sent on the TAP device.
    #[error("cannot send a frame on the TAP device: {0}")]
    Net(#[source] std::io::Error),
}

/// Outputs that go nowhere: a quiet replay, a backup before it goes live.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl OutputSink for NullSink {
    fn console(&mut self, _: u64, _: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }

    fn disk(&mut self, _: u64, _: DiskRequest) -> Result<(), SinkError> {
        Ok(())
    }

    fn net(&mut self, _: u64, _: Vec<u8>) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
