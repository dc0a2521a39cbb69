//! Disk requests: outputs of the guest's block device, and the completions
//! that come back as events; and the devices' descriptions in a header.

use serde::{Deserialize, Serialize};

/// virtio-blk request statuses (virtio 1.2, 5.2.6).
pub const STATUS_OK: u8 = 0;
/// Status of a request that failed.
pub const STATUS_IOERR: u8 = 1;
/// Status of a request of a kind the device does not support.
pub const STATUS_UNSUPP: u8 = 2;

/// A request of the guest's block device to the host's disk. Requests are
/// numbered in the order the guest submitted them, so the number is the
/// same on every replay of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRequest {
    /// Its number, in submission order.
    pub id: u64,
    /// What it asks.
    pub op: DiskOp,
}

/// What a disk request asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskOp {
    /// Reads `len` bytes from `sector` on.
    Read {
        /// The first sector.
        sector: u64,
        /// Its length in bytes.
        len: u32,
    },
    /// Writes `data` at `sector` on.
    Write {
        /// The first sector.
        sector: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Makes every completed write durable.
    Flush,
}

impl DiskRequest {
    /// Whether the request changes the disk, and so is an output under the
    /// output rule; a read only asks for an input.
    pub fn is_output(&self) -> bool {
        !matches!(self.op, DiskOp::Read { .. })
    }
}

/// The guest-visible description of a disk: part of a run's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Its size in 512-byte sectors.
    pub sectors: u64,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// The guest-visible description of a network card: part of a run's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    /// Its MAC address.
    pub mac: [u8; 6],
}

impl std::fmt::Display for DiskInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sectors", self.sectors)?;
        if self.read_only {
            f.write_str(", read-only")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for NetInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.mac;
        write!(f, "MAC {a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}
