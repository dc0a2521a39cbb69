use std::sync::Arc;

use ft_logging::{DiskRequest, OutputSink, SinkError};

use super::{DiskIo, StdoutSink, Tap};

/// Outputs straight to this host: the console on stdout, disk requests to
/// the disk's I/O thread, frames to the TAP device. Without a disk or a TAP
/// (a replay), those go nowhere: completions come from the log.
#[derive(Debug)]
pub struct HostSink {
    console: StdoutSink,
    disk: Option<DiskIo>,
    tap: Option<Arc<Tap>>,
}

impl HostSink {
    pub fn new(disk: Option<DiskIo>, tap: Option<Arc<Tap>>) -> Self {
        Self {
            console: StdoutSink::new(),
            disk,
            tap,
        }
    }
}

impl OutputSink for HostSink {
    fn console(&mut self, _exit: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.console.write(bytes)
    }

    fn disk(&mut self, _exit: u64, request: DiskRequest) -> Result<(), SinkError> {
        match &self.disk {
            Some(disk) => disk.submit(request),
            None => Ok(()),
        }
    }

    fn net(&mut self, _exit: u64, frame: Vec<u8>) -> Result<(), SinkError> {
        match &self.tap {
            Some(tap) => tap.send(&frame).map_err(SinkError::Net),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.console.flush()
    }
}
