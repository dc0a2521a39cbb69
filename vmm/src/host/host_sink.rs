use ft_logging::{DiskRequest, OutputSink, SinkError};

use super::{DiskIo, StdoutSink};

/// Outputs straight to this host: the console on stdout, disk requests to
/// the disk's I/O thread. Without one (a replay), disk requests go nowhere:
/// their completions come from the log.
#[derive(Debug)]
pub struct HostSink {
    console: StdoutSink,
    disk: Option<DiskIo>,
}

impl HostSink {
    pub fn new(disk: Option<DiskIo>) -> Self {
        Self {
            console: StdoutSink::new(),
            disk,
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

    fn flush(&mut self) -> Result<(), SinkError> {
        self.console.flush()
    }
}
