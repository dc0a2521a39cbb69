//! The console of a replay that may run parts of the trace more than once:
//! it prints the bytes of exits in a window, each exit's bytes once.

use ft_logging::{DiskRequest, OutputSink, SinkError};

use crate::host::StdoutSink;

/// Console bytes of exits in `from..until` go to stdout, the first time
/// the replay reaches them; everything else is dropped (a replay's disk
/// requests and frames go nowhere: their completions are in the trace).
#[derive(Debug)]
pub struct ConsoleWindow {
    out: Option<StdoutSink>,
    from: u64,
    until: Option<u64>,
    /// The last exit whose bytes were printed.
    printed: Option<u64>,
}

impl ConsoleWindow {
    /// Bytes of exits `from` and later, before `until` when given.
    pub fn new(from: u64, until: Option<u64>) -> Self {
        Self {
            out: Some(StdoutSink::new()),
            from,
            until,
            printed: None,
        }
    }

    /// Prints nothing.
    pub fn quiet() -> Self {
        Self {
            out: None,
            from: 0,
            until: None,
            printed: None,
        }
    }
}

impl ConsoleWindow {
    /// Whether a replay that has been through exit `reached` may skip the
    /// exits up to `through` without losing output: nothing of them would
    /// be printed, or they were printed already.
    pub fn loses_nothing_through(&self, through: u64, reached: u64) -> bool {
        self.out.is_none() || through < self.from || through <= reached
    }
}

impl OutputSink for ConsoleWindow {
    fn console(&mut self, exit: u64, bytes: &[u8]) -> Result<(), SinkError> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let fresh = self.printed.is_none_or(|printed| exit > printed);
        let inside = exit >= self.from && self.until.is_none_or(|until| exit < until);
        if fresh && inside {
            self.printed = Some(exit);
            out.write(bytes)?;
        }
        Ok(())
    }

    fn disk(&mut self, _: u64, _: DiskRequest) -> Result<(), SinkError> {
        Ok(())
    }

    fn net(&mut self, _: u64, _: Vec<u8>) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}
