//! Outputs straight to this host: the console on stdout, disk requests to
//! the disk's I/O thread, frames to the TAP device.

use std::sync::Arc;

use ft_logging::{DiskOp, DiskRequest, OutputSink, SinkError};

use super::{DiskIo, OutputLease, StdoutSink, Tap};
use crate::monitor::Stats;

/// Where this host's disk requests and frames go: the disk's I/O thread and
/// the TAP device. Without them (a replay) they go nowhere: completions come
/// from the log. What they carry is counted in `stats`.
#[derive(Debug, Default)]
pub struct HostDevices {
    /// The disk's I/O thread, if the guest has a disk.
    pub disk: Option<DiskIo>,
    /// The TAP device, if the guest has a network card.
    pub tap: Option<Arc<Tap>>,
    /// The lease outputs go out under while paired, set by the output gate;
    /// the disk's writes wait for it too, right before they land.
    pub lease: OutputLease,
    /// Where what they carry is counted.
    pub stats: Arc<Stats>,
}

impl HostDevices {
    /// Sends `request` to the disk.
    pub fn disk(&self, request: DiskRequest) -> Result<(), SinkError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let counters = &self.stats.disk;
        match &request.op {
            DiskOp::Read { len, .. } => {
                counters.reads.inc();
                counters.read_bytes.inc_by(u64::from(*len));
            }
            DiskOp::Write { data, .. } => {
                counters.writes.inc();
                counters.write_bytes.inc_by(data.len() as u64);
            }
            DiskOp::Flush => counters.flushes.inc(),
        }
        disk.submit(request)
    }

    /// Sends `frame` on the TAP device.
    pub fn send(&self, frame: &[u8]) -> Result<(), SinkError> {
        let Some(tap) = &self.tap else {
            return Ok(());
        };
        tap.send(frame).map_err(SinkError::Net)?;
        self.stats.net.tx_frames.inc();
        self.stats.net.tx_bytes.inc_by(frame.len() as u64);
        Ok(())
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
    /// This host's console and `devices`.
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
