//! virtio-blk (virtio 1.2, 5.2): parses the driver's requests into disk
//! requests for the host, and completes them when their completions come
//! back as events. Requests the device can answer itself (GET_ID, writes to
//! a read-only disk, malformed chains) complete at once.

use std::collections::BTreeMap;

use ft_logging::{DiskInfo, DiskOp, DiskRequest, STATUS_IOERR, STATUS_OK, STATUS_UNSUPP};
use serde::{Deserialize, Serialize};
use shared_disk::image::SECTOR;
use tracing::{debug, warn};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

use super::VirtioDevice;
use crate::effect::Effect;
use crate::memory::GuestRam;
use crate::state::{InvalidState, check};

/// The request queue's size.
const QUEUE_SIZE: u16 = 256;
/// The longest read or write accepted, bounding what one request holds in
/// host memory and in the log.
pub const MAX_TRANSFER: u32 = 1 << 20;
/// What GET_ID answers: the same on every host, so a trace replays anywhere.
const DISK_ID: &[u8] = b"ftvm-disk";
/// A request header: type, reserved, sector.
const HEADER_LEN: u32 = 16;

/// Where a request's completion goes in guest memory.
#[derive(Debug, Clone)]
struct Pending {
    head: u16,
    /// The device-writable data buffers of a read.
    buffers: Vec<(GuestAddress, u32)>,
    status: GuestAddress,
}

/// The virtio-blk device: parses requests into disk effects and completes them.
#[derive(Debug)]
pub struct Block {
    info: DiskInfo,
    /// The next request's number; never reset, so that a completion that
    /// arrives after a device reset cannot be taken for a newer request.
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
}

/// A request in flight, by number: where its completion goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingState {
    id: u64,
    head: u16,
    /// (guest address, length) of each data buffer of a read.
    buffers: Vec<(u64, u32)>,
    status: u64,
}

/// The state of virtio-blk beyond its configuration: the next request's
/// number and every request in flight (the host has it, its completion
/// has not come back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    next_id: u64,
    pending: Vec<PendingState>,
}

impl BlockState {
    /// The numbers of the requests in flight, in order.
    pub fn requests_in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.iter().map(|pending| pending.id)
    }
}

/// What a request chain asks for, once checked.
enum Parsed {
    /// The host must do this.
    Host(DiskOp, Pending),
    /// The device answers at once with this status, `written` bytes of
    /// data already in the buffers.
    Answer {
        status: u8,
        written: u32,
        pending: Pending,
    },
}

impl Block {
    /// A disk of `info`'s size and mode.
    pub fn new(info: DiskInfo) -> Self {
        Self {
            info,
            next_id: 0,
            pending: BTreeMap::new(),
        }
    }

    /// Whether requests wait for the host.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Completes request `request` with `status` and, for a read, its data.
    /// Returns whether a buffer went to the used ring.
    pub fn complete(
        &mut self,
        queue: &mut Queue,
        memory: &GuestRam,
        request: u64,
        mut status: u8,
        data: &[u8],
    ) -> bool {
        let Some(pending) = self.pending.remove(&request) else {
            // The driver reset the device since it made the request.
            debug!(request, "completion of a request the device no longer has");
            return false;
        };
        let wanted: u32 = pending.buffers.iter().map(|(_, len)| len).sum();
        let mut written = 0;
        if status == STATUS_OK && !pending.buffers.is_empty() {
            if data.len() == wanted as usize && write_buffers(memory, &pending.buffers, data) {
                written = wanted;
            } else {
                status = STATUS_IOERR;
            }
        }
        finish(queue, memory, &pending, status, written)
    }

    /// Parses one chain; None when it cannot be answered at all.
    fn parse(&self, descriptors: &[Descriptor], head: u16, memory: &GuestRam) -> Option<Parsed> {
        // The status byte is the last descriptor, device-writable. A last
        // descriptor that still names a next one is where virtio-queue cut
        // a chain that loops or runs past 4 GiB: no status byte there.
        let last = descriptors.last()?;
        if last.has_next()
            || !last.is_write_only()
            || last.len() < 1
            || !in_ram(memory, last.addr(), 1)
        {
            return None;
        }
        let mut pending = Pending {
            head,
            buffers: Vec::new(),
            status: last.addr(),
        };
        let ioerr = |pending| Parsed::Answer {
            status: STATUS_IOERR,
            written: 0,
            pending,
        };
        let [header, data @ .., _] = descriptors else {
            return Some(ioerr(pending));
        };
        if header.is_write_only()
            || header.len() < HEADER_LEN
            || !in_ram(memory, header.addr(), HEADER_LEN)
        {
            return Some(ioerr(pending));
        }
        let (kind, sector) = match (
            memory.read_obj::<u32>(header.addr()),
            memory.read_obj::<u64>(header.addr().unchecked_add(8)),
        ) {
            (Ok(kind), Ok(sector)) => (u32::from_le(kind), u64::from_le(sector)),
            _ => return Some(ioerr(pending)),
        };
        if data.iter().any(|d| !in_ram(memory, d.addr(), d.len())) {
            return Some(ioerr(pending));
        }
        let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
        let writable = data.iter().all(Descriptor::is_write_only);
        let readable = data.iter().all(|d| !d.is_write_only());
        match kind {
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                let fits = total.is_multiple_of(SECTOR)
                    && total <= u64::from(MAX_TRANSFER)
                    && sector
                        .checked_add(total / SECTOR)
                        .is_some_and(|end| end <= self.info.sectors);
                let directed = if kind == VIRTIO_BLK_T_IN {
                    writable
                } else {
                    readable
                };
                if !fits || !directed || total == 0 {
                    return Some(ioerr(pending));
                }
                if kind == VIRTIO_BLK_T_IN {
                    pending.buffers = data.iter().map(|d| (d.addr(), d.len())).collect();
                    return Some(Parsed::Host(
                        DiskOp::Read {
                            sector,
                            len: total as u32,
                        },
                        pending,
                    ));
                }
                if self.info.read_only {
                    return Some(ioerr(pending));
                }
                let mut bytes = vec![0; total as usize];
                let mut at = 0;
                for d in data {
                    let end = at + d.len() as usize;
                    if memory.read_slice(&mut bytes[at..end], d.addr()).is_err() {
                        return Some(ioerr(pending));
                    }
                    at = end;
                }
                Some(Parsed::Host(
                    DiskOp::Write {
                        sector,
                        data: bytes,
                    },
                    pending,
                ))
            }
            VIRTIO_BLK_T_FLUSH if self.info.read_only => Some(Parsed::Answer {
                status: STATUS_OK,
                written: 0,
                pending,
            }),
            VIRTIO_BLK_T_FLUSH => Some(Parsed::Host(DiskOp::Flush, pending)),
            VIRTIO_BLK_T_GET_ID => {
                if !writable || total < u64::from(VIRTIO_BLK_ID_BYTES) {
                    return Some(ioerr(pending));
                }
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                id[..DISK_ID.len()].copy_from_slice(DISK_ID);
                let buffers: Vec<_> = data.iter().map(|d| (d.addr(), d.len())).collect();
                let written = write_prefix(memory, &buffers, &id);
                Some(Parsed::Answer {
                    status: STATUS_OK,
                    written,
                    pending,
                })
            }
            _ => Some(Parsed::Answer {
                status: STATUS_UNSUPP,
                written: 0,
                pending,
            }),
        }
    }
}

impl VirtioDevice for Block {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut features = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH);
        if self.info.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn queue_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    /// `capacity` (a little-endian u64 at offset 0) is the only field; the
    /// rest reads as zeros.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let capacity = self.info.sectors.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|offset| capacity.get(offset + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn process(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        memory: &GuestRam,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let chains: Vec<_> = match queue.iter(memory) {
            Ok(chains) => chains
                .map(|chain| (chain.head_index(), chain.collect::<Vec<_>>()))
                .collect(),
            Err(error) => {
                warn!(%error, "virtio-blk: the driver's available ring is invalid; ignored");
                return false;
            }
        };
        let mut used = false;
        for (head, descriptors) in chains {
            match self.parse(&descriptors, head, memory) {
                Some(Parsed::Host(op, pending)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.pending.insert(id, pending);
                    effects.push(Effect::Disk(DiskRequest { id, op }));
                }
                Some(Parsed::Answer {
                    status,
                    written,
                    pending,
                }) => used |= finish(queue, memory, &pending, status, written),
                None if head < queue.size() => {
                    warn!(
                        head,
                        "virtio-blk: a request without a usable status byte (none, or a chain that loops or exceeds 4 GiB); returned unanswered"
                    );
                    used |= queue.add_used(memory, head, 0).is_ok();
                }
                None => warn!(
                    head,
                    "virtio-blk: a request head outside the queue; ignored"
                ),
            }
        }
        used
    }

    fn reset(&mut self) {
        self.pending.clear();
    }

    type State = BlockState;

    fn state(&self) -> BlockState {
        BlockState {
            next_id: self.next_id,
            pending: self
                .pending
                .iter()
                .map(|(&id, pending)| PendingState {
                    id,
                    head: pending.head,
                    buffers: pending.buffers.iter().map(|(a, len)| (a.0, *len)).collect(),
                    status: pending.status.0,
                })
                .collect(),
        }
    }

    fn restore(&mut self, state: &BlockState, queues: &[Queue]) -> Result<(), InvalidState> {
        check(
            state.pending.len() <= usize::from(queues[0].max_size()),
            "virtio-blk",
            "more requests in flight than the queue holds",
        )?;
        self.next_id = state.next_id;
        self.pending.clear();
        for pending in &state.pending {
            let total: u64 = pending.buffers.iter().map(|(_, len)| u64::from(*len)).sum();
            check(
                pending.id < state.next_id && total <= u64::from(MAX_TRANSFER),
                "virtio-blk",
                "a request numbered ahead, or larger than any read",
            )?;
            let restored = Pending {
                head: pending.head,
                buffers: pending
                    .buffers
                    .iter()
                    .map(|&(addr, len)| (GuestAddress(addr), len))
                    .collect(),
                status: GuestAddress(pending.status),
            };
            check(
                self.pending.insert(pending.id, restored).is_none(),
                "virtio-blk",
                "two requests with one number",
            )?;
        }
        Ok(())
    }
}

/// Whether `len` bytes from `addr` are guest RAM.
fn in_ram(memory: &GuestRam, addr: GuestAddress, len: u32) -> bool {
    memory.check_range(addr, len as usize, Permissions::ReadWrite)
}

/// Writes `data` across `buffers` in order; they hold exactly its length.
fn write_buffers(memory: &GuestRam, buffers: &[(GuestAddress, u32)], data: &[u8]) -> bool {
    write_prefix(memory, buffers, data) as usize == data.len()
}

/// Writes as much of `data` as `buffers` hold; returns how much that was.
fn write_prefix(memory: &GuestRam, buffers: &[(GuestAddress, u32)], data: &[u8]) -> u32 {
    let mut at = 0;
    for &(addr, len) in buffers {
        let end = (at + len as usize).min(data.len());
        if at == end || memory.write_slice(&data[at..end], addr).is_err() {
            break;
        }
        at = end;
    }
    at as u32
}

/// Writes the status byte and returns the chain to the driver.
fn finish(
    queue: &mut Queue,
    memory: &GuestRam,
    pending: &Pending,
    status: u8,
    written: u32,
) -> bool {
    if memory.write_obj(status, pending.status).is_err() {
        return false;
    }
    queue.add_used(memory, pending.head, written + 1).is_ok()
}

#[cfg(test)]
mod tests;
