//! Disk requests: outputs of the guest's block device, and the completions
//! that come back as events; and the devices' descriptions in a header.

/// Bytes in a sector, the unit of a virtio-blk request's position.
pub const SECTOR_SIZE: u64 = 512;

/// virtio-blk request statuses (virtio 1.2, 5.2.6).
pub const STATUS_OK: u8 = 0;
pub const STATUS_IOERR: u8 = 1;
pub const STATUS_UNSUPP: u8 = 2;

/// A request of the guest's block device to the host's disk. Requests are
/// numbered in the order the guest submitted them, so the number is the
/// same on every replay of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRequest {
    pub id: u64,
    pub op: DiskOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    Read { sector: u64, len: u32 },
    Write { sector: u64, data: Vec<u8> },
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    pub sectors: u64,
    pub read_only: bool,
}

/// The guest-visible description of a network card: part of a run's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetInfo {
    pub mac: [u8; 6],
}
