//! A driver for device tests: it programs the transport's registers and
//! lays out split queues by hand in guest memory, so that tests can offer
//! well-formed and malformed buffers alike.

use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress};

use super::{VirtioDevice, VirtioMmio};
use crate::effect::Effect;
use crate::memory::GuestRam;

pub const RAM: usize = 1 << 20;
/// Queue size the driver sets.
pub const QUEUE: u16 = 16;
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;

/// Where a queue's rings are, and what the driver has put there.
struct Rings {
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
}

pub struct Driver<D> {
    pub memory: GuestRam,
    pub device: VirtioMmio<D>,
    rings: Vec<Rings>,
}

impl<D: VirtioDevice> Driver<D> {
    /// A driver that has set `device` up with one queue per (descriptor
    /// table, available ring, used ring) address triple.
    pub fn new(device: D, rings: &[(u64, u64, u64)]) -> Self {
        let memory = GuestRam::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
        let mut driver = Self {
            device: VirtioMmio::new(device, memory.clone()),
            memory,
            rings: Vec::new(),
        };
        driver.set_up(rings);
        driver
    }

    pub fn read(&mut self, register: u32) -> u32 {
        let mut data = [0; 4];
        self.device.read(u64::from(register), &mut data);
        u32::from_le_bytes(data)
    }

    pub fn write(&mut self, register: u32, value: u32) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.device
            .write(u64::from(register), &value.to_le_bytes(), &mut effects);
        effects
    }

    /// Resets the device and sets it up again, with these rings.
    pub fn set_up(&mut self, rings: &[(u64, u64, u64)]) {
        self.write(VIRTIO_MMIO_STATUS, 0);
        self.write(VIRTIO_MMIO_STATUS, 1 | 2);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES, 1); // VERSION_1
        self.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
        assert_eq!(self.read(VIRTIO_MMIO_STATUS) & 8, 8, "FEATURES_OK");
        self.rings.clear();
        for (index, &(desc, avail, used)) in rings.iter().enumerate() {
            self.write(VIRTIO_MMIO_QUEUE_SEL, index as u32);
            self.write(VIRTIO_MMIO_QUEUE_NUM, u32::from(QUEUE));
            for (low, addr) in [
                (VIRTIO_MMIO_QUEUE_DESC_LOW, desc),
                (VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail),
                (VIRTIO_MMIO_QUEUE_USED_LOW, used),
            ] {
                self.write(low, addr as u32);
                self.write(low + 4, (addr >> 32) as u32);
            }
            self.write(VIRTIO_MMIO_QUEUE_READY, 1);
            self.rings.push(Rings {
                desc,
                avail,
                used,
                next_desc: 0,
                avail_idx: 0,
            });
        }
        self.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
    }

    /// Writes descriptor `index` of queue `queue`.
    pub fn descriptor(
        &self,
        queue: usize,
        index: u16,
        (addr, len, flags): (u64, u32, u16),
        next: u16,
    ) {
        let at = self.rings[queue].desc + 16 * u64::from(index);
        self.memory.write_obj(addr, GuestAddress(at)).unwrap();
        self.memory.write_obj(len, GuestAddress(at + 8)).unwrap();
        self.memory.write_obj(flags, GuestAddress(at + 12)).unwrap();
        self.memory.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    /// The next free descriptor of `queue`, claimed.
    pub fn claim_descriptor(&mut self, queue: usize) -> u16 {
        let rings = &mut self.rings[queue];
        rings.next_desc += 1;
        rings.next_desc - 1
    }

    /// Puts a chain of (addr, len, flags) descriptors on `queue`, linked in
    /// order, offers its head (or `head`) and notifies.
    pub fn offer(
        &mut self,
        queue: usize,
        chain: &[(u64, u32, u16)],
        head: Option<u16>,
    ) -> Vec<Effect> {
        let first = self.rings[queue].next_desc;
        for (i, &(addr, len, flags)) in chain.iter().enumerate() {
            let index = first + i as u16;
            let flags = if i + 1 == chain.len() {
                flags
            } else {
                flags | NEXT
            };
            self.descriptor(queue, index, (addr, len, flags), index + 1);
        }
        let rings = &mut self.rings[queue];
        rings.next_desc += chain.len() as u16;
        let slot = rings.avail + 4 + 2 * u64::from(rings.avail_idx % QUEUE);
        self.memory
            .write_obj(head.unwrap_or(first), GuestAddress(slot))
            .unwrap();
        rings.avail_idx = rings.avail_idx.wrapping_add(1);
        self.memory
            .write_obj(rings.avail_idx, GuestAddress(rings.avail + 2))
            .unwrap();
        self.write(VIRTIO_MMIO_QUEUE_NOTIFY, queue as u32)
    }

    /// Makes the available index of `queue` claim `count` more heads than
    /// were offered.
    pub fn jump_avail_index(&mut self, queue: usize, count: u16) {
        let rings = &self.rings[queue];
        let far = rings.avail_idx.wrapping_add(count);
        self.memory
            .write_obj(far, GuestAddress(rings.avail + 2))
            .unwrap();
    }

    /// The used ring of `queue`: (head, length) pairs.
    pub fn used(&self, queue: usize) -> Vec<(u32, u32)> {
        let used = self.rings[queue].used;
        let idx: u16 = self.memory.read_obj(GuestAddress(used + 2)).unwrap();
        (0..idx)
            .map(|i| {
                let at = used + 4 + 8 * u64::from(i % QUEUE);
                (
                    self.memory.read_obj(GuestAddress(at)).unwrap(),
                    self.memory.read_obj(GuestAddress(at + 4)).unwrap(),
                )
            })
            .collect()
    }
}
