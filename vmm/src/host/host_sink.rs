use std::sync::Arc;

use ft_logging::{DiskRequest, OutputSink, SinkError};

use super::{DiskIo, StdoutSink, Tap};

/// Where this host's disk requests and frames go: the disk's I/O thread and
/// the TAP device. Without them (a replay) they go nowhere: completions come
/// from the log.
#[derive(Debug, Default)]
pub struct HostDevices {
    pub disk: Option<DiskIo>,
    pub tap: Option<Arc<Tap>>,
}

impl HostDevices {
    pub fn disk(&self, request: DiskRequest) -> Result<(), SinkError> {
        match &self.disk {
            Some(disk) => disk.submit(request),
            None => Ok(()),
        }
    }

    pub fn send(&self, frame: &[u8]) -> Result<(), SinkError> {
        match &self.tap {
            Some(tap) => tap.send(frame).map_err(SinkError::Net),
            None => Ok(()),
        }
    }
}

/// Outputs straight to this host: the console on stdout, the rest to its
/// devices.
#[derive(Debug)]
pub struct HostSink {
    console: StdoutSink,
    devices: HostDevices,
}

impl HostSink {
    pub fn new(devices: HostDevices) -> Self {
        Self {
            console: StdoutSink::new(),
            devices,
        }
    }
}

impl OutputSink for HostSink {
    fn console(&mut self, _exit: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.console.write(bytes)
    }

    fn disk(&mut self, _exit: u64, request: DiskRequest) -> Result<(), SinkError> {
        self.devices.disk(request)
    }

    fn net(&mut self, _exit: u64, frame: Vec<u8>) -> Result<(), SinkError> {
        self.devices.send(&frame)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.console.flush()
    }
}
