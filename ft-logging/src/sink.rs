/// Where every output of the guest goes: the host (run, record), the host
/// once the backup acknowledged it (primary), or a digest check (replay,
/// backup).
pub trait OutputSink {
    /// Console bytes the guest transmitted at exit `exit`.
    fn console(&mut self, exit: u64, bytes: &[u8]) -> Result<(), SinkError>;

    /// The guest is about to wait or end: make what it wrote visible.
    fn flush(&mut self) -> Result<(), SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write the console: {0}")]
    Console(#[source] std::io::Error),
}
