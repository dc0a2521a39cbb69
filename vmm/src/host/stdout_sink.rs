//! The guest's console on stdout, buffered and flushed when the guest
//! waits or ends.

use std::io::{self, BufWriter, Stdout, Write};

use ft_logging::SinkError;
use tracing::warn;

/// The guest console on ftvm's stdout, flushed whenever the guest waits.
#[derive(Debug)]
pub struct StdoutSink {
    out: BufWriter<Stdout>,
    /// Set once the reader went away: the guest keeps running, unheard.
    closed: bool,
}

impl StdoutSink {
    /// The console on this process's stdout.
    pub fn new() -> Self {
        Self {
            out: BufWriter::new(io::stdout()),
            closed: false,
        }
    }

    fn check(&mut self, result: io::Result<()>) -> Result<(), SinkError> {
        match result {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                warn!("stdout was closed; the guest's console output is discarded from now on");
                self.closed = true;
                Ok(())
            }
            other => other.map_err(SinkError::Console),
        }
    }

    /// Writes `bytes` (buffered).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        let result = self.out.write_all(bytes);
        self.check(result)
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        let result = self.out.flush();
        self.check(result)
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}
