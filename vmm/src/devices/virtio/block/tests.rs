//! The block device through its transport, driven the way a driver would:
//! registers written, a split queue laid out by hand in guest memory, and
//! malformed requests that must be refused without harm.

use ft_logging::{DiskInfo, DiskOp, DiskRequest, STATUS_IOERR, STATUS_OK, STATUS_UNSUPP};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::super::VirtioMmio;
use super::Block;
use crate::platform::Effect;

const RAM: usize = 1 << 20;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const QUEUE: u16 = 16;
const HEADER: u64 = 0x8000;
const DATA: u64 = 0x9000;
const STATUS: u64 = 0xf000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

struct Driver {
    memory: GuestMemoryMmap,
    device: VirtioMmio<Block>,
    next_desc: u16,
    avail_idx: u16,
}

impl Driver {
    fn new(read_only: bool) -> Self {
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
        let block = Block::new(DiskInfo {
            sectors: 64,
            read_only,
        });
        let mut driver = Self {
            device: VirtioMmio::new(block, memory.clone()),
            memory,
            next_desc: 0,
            avail_idx: 0,
        };
        driver.set_up(DESC, AVAIL, USED);
        driver
    }

    fn read(&mut self, register: u32) -> u32 {
        let mut data = [0; 4];
        self.device.read(u64::from(register), &mut data);
        u32::from_le_bytes(data)
    }

    fn write(&mut self, register: u32, value: u32) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.device
            .write(u64::from(register), &value.to_le_bytes(), &mut effects);
        effects
    }

    fn set_up(&mut self, desc: u64, avail: u64, used: u64) {
        self.write(VIRTIO_MMIO_STATUS, 0);
        self.write(VIRTIO_MMIO_STATUS, 1 | 2);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES, 1); // VERSION_1
        self.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
        assert_eq!(self.read(VIRTIO_MMIO_STATUS) & 8, 8, "FEATURES_OK");
        self.write(VIRTIO_MMIO_QUEUE_SEL, 0);
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
        self.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
        self.next_desc = 0;
        self.avail_idx = 0;
    }

    fn header(&self, kind: u32, sector: u64) {
        self.memory
            .write_obj(kind.to_le(), GuestAddress(HEADER))
            .unwrap();
        self.memory
            .write_obj(sector.to_le(), GuestAddress(HEADER + 8))
            .unwrap();
        self.memory.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    /// Writes descriptor `index`.
    fn descriptor(&self, index: u16, (addr, len, flags): (u64, u32, u16), next: u16) {
        let at = DESC + 16 * u64::from(index);
        self.memory.write_obj(addr, GuestAddress(at)).unwrap();
        self.memory.write_obj(len, GuestAddress(at + 8)).unwrap();
        self.memory.write_obj(flags, GuestAddress(at + 12)).unwrap();
        self.memory.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    /// Puts a chain of (addr, len, flags) descriptors, linked in order, and
    /// offers its head (or `head`) on the available ring.
    fn offer(&mut self, chain: &[(u64, u32, u16)], head: Option<u16>) -> Vec<Effect> {
        let first = self.next_desc;
        for (i, &(addr, len, flags)) in chain.iter().enumerate() {
            let index = first + i as u16;
            let flags = if i + 1 == chain.len() {
                flags
            } else {
                flags | NEXT
            };
            self.descriptor(index, (addr, len, flags), index + 1);
        }
        self.next_desc += chain.len() as u16;
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QUEUE);
        self.memory
            .write_obj(head.unwrap_or(first), GuestAddress(slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.memory
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
        self.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    }

    /// A well-formed request: header, data buffers, status.
    fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32, u16)]) -> Vec<Effect> {
        self.header(kind, sector);
        let mut chain = vec![(HEADER, 16, 0)];
        chain.extend_from_slice(data);
        chain.push((STATUS, 1, WRITE));
        self.offer(&chain, None)
    }

    fn used(&self) -> Vec<(u32, u32)> {
        let idx: u16 = self.memory.read_obj(GuestAddress(USED + 2)).unwrap();
        (0..idx)
            .map(|i| {
                let at = USED + 4 + 8 * u64::from(i % QUEUE);
                (
                    self.memory.read_obj(GuestAddress(at)).unwrap(),
                    self.memory.read_obj(GuestAddress(at + 4)).unwrap(),
                )
            })
            .collect()
    }

    fn status(&self) -> u8 {
        self.memory.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn complete(&mut self, request: u64, status: u8, data: &[u8]) {
        self.device.complete(|device, queues, memory| {
            device.complete(&mut queues[0], memory, request, status, data)
        });
    }
}

fn disk(effects: &[Effect]) -> Vec<DiskRequest> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Disk(request) => Some(request.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_transport_identifies_a_version_2_block_device_with_its_capacity() {
    let mut driver = Driver::new(false);
    assert_eq!(driver.read(VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    assert_eq!(driver.read(VIRTIO_MMIO_VERSION), 2);
    assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_ID), 2);
    assert_eq!(driver.read(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    assert_eq!(driver.read(VIRTIO_MMIO_CONFIG), 64, "capacity, low word");
    assert_eq!(driver.read(VIRTIO_MMIO_CONFIG + 4), 0);
    driver.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_FEATURES), 1, "VERSION_1");
    driver.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_FEATURES), 1 << 9, "FLUSH");
    let read_only = Driver::new(true).read(VIRTIO_MMIO_DEVICE_FEATURES);
    assert_eq!(read_only, (1 << 9) | (1 << 5), "FLUSH and RO");
}

#[test]
fn a_legacy_driver_does_not_get_features_ok() {
    let mut driver = Driver::new(false);
    driver.write(VIRTIO_MMIO_STATUS, 0);
    driver.write(VIRTIO_MMIO_STATUS, 1 | 2);
    driver.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
    assert_eq!(driver.read(VIRTIO_MMIO_STATUS), 1 | 2);
}

#[test]
fn a_read_goes_to_the_host_and_its_completion_fills_the_buffers() {
    let mut driver = Driver::new(false);
    let effects = driver.request(
        VIRTIO_BLK_T_IN,
        3,
        &[(DATA, 512, WRITE), (DATA + 0x1000, 512, WRITE)],
    );
    assert_eq!(
        disk(&effects),
        vec![DiskRequest {
            id: 0,
            op: DiskOp::Read {
                sector: 3,
                len: 1024
            }
        }]
    );
    assert!(!driver.device.irq() && driver.used().is_empty(), "not yet");
    let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    driver.complete(0, STATUS_OK, &data);
    assert_eq!(driver.used(), vec![(0, 1025)]);
    assert_eq!(driver.status(), STATUS_OK);
    let mut second = [0; 512];
    driver
        .memory
        .read_slice(&mut second, GuestAddress(DATA + 0x1000))
        .unwrap();
    assert_eq!(second[..], data[512..]);
    assert!(driver.device.irq());
    assert_eq!(driver.read(VIRTIO_MMIO_INTERRUPT_STATUS), 1);
    driver.write(VIRTIO_MMIO_INTERRUPT_ACK, 1);
    assert!(!driver.device.irq());
}

#[test]
fn a_read_completing_with_the_wrong_length_is_an_io_error() {
    let mut driver = Driver::new(false);
    driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    driver.complete(0, STATUS_OK, &[1; 100]);
    assert_eq!(driver.status(), STATUS_IOERR);
    assert_eq!(driver.used(), vec![(0, 1)]);
}

#[test]
fn writes_and_flushes_go_to_the_host_with_their_data() {
    let mut driver = Driver::new(false);
    driver
        .memory
        .write_slice(&[0xab; 512], GuestAddress(DATA))
        .unwrap();
    let write = driver.request(VIRTIO_BLK_T_OUT, 7, &[(DATA, 512, 0)]);
    let flush = driver.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    let requests: Vec<_> = disk(&write).into_iter().chain(disk(&flush)).collect();
    assert_eq!(
        requests,
        vec![
            DiskRequest {
                id: 0,
                op: DiskOp::Write {
                    sector: 7,
                    data: vec![0xab; 512]
                }
            },
            DiskRequest {
                id: 1,
                op: DiskOp::Flush
            },
        ]
    );
    driver.complete(1, STATUS_OK, &[]);
    driver.complete(0, STATUS_OK, &[]);
    assert_eq!(driver.used(), vec![(3, 1), (0, 1)], "in completion order");
}

#[test]
fn a_read_only_disk_fails_writes_at_once_and_never_asks_the_host() {
    let mut driver = Driver::new(true);
    let effects = driver.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.status(), STATUS_IOERR);
    assert_eq!(driver.used(), vec![(0, 1)]);
    assert!(driver.device.irq());
    let effects = driver.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.status(), STATUS_OK);
}

#[test]
fn get_id_and_unknown_requests_are_answered_by_the_device() {
    let mut driver = Driver::new(false);
    let effects = driver.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 20, WRITE)]);
    assert!(disk(&effects).is_empty());
    let mut id = [0; 20];
    driver
        .memory
        .read_slice(&mut id, GuestAddress(DATA))
        .unwrap();
    assert_eq!(&id[..9], b"ftvm-disk");
    assert_eq!(driver.status(), STATUS_OK);
    driver.request(99, 0, &[]);
    assert_eq!(driver.status(), STATUS_UNSUPP);
    assert_eq!(driver.used(), vec![(0, 21), (3, 1)]);
}

#[test]
fn malformed_requests_are_refused_and_the_device_goes_on() {
    let across_end = RAM as u64 - 256;
    type Case = (&'static str, (u64, u32, u16), u32, u64);
    let cases: [Case; 6] = [
        (
            "beyond RAM",
            (0x1_0000_0000, 512, WRITE),
            VIRTIO_BLK_T_IN,
            0,
        ),
        (
            "across the end of RAM",
            (across_end, 512, WRITE),
            VIRTIO_BLK_T_IN,
            0,
        ),
        (
            "read into a readable buffer",
            (DATA, 512, 0),
            VIRTIO_BLK_T_IN,
            0,
        ),
        (
            "write from a writable buffer",
            (DATA, 512, WRITE),
            VIRTIO_BLK_T_OUT,
            0,
        ),
        ("not whole sectors", (DATA, 100, WRITE), VIRTIO_BLK_T_IN, 0),
        (
            "beyond the disk's end",
            (DATA, 1024, WRITE),
            VIRTIO_BLK_T_IN,
            63,
        ),
    ];
    for (name, buffer, kind, sector) in cases {
        let mut driver = Driver::new(false);
        let effects = driver.request(kind, sector, &[buffer]);
        assert!(disk(&effects).is_empty(), "{name}");
        assert_eq!(driver.status(), STATUS_IOERR, "{name}");
        assert_eq!(driver.used().len(), 1, "{name}");
        // The device still serves a good request.
        let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
        assert_eq!(disk(&effects).len(), 1, "{name}: recovery");
    }
}

#[test]
fn chains_without_a_usable_shape_are_returned_or_ignored() {
    let mut driver = Driver::new(false);
    // Over 4 GiB in all: virtio-queue ends the chain before the buffer, so
    // it has no status byte and is returned unanswered.
    let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, u32::MAX, WRITE)]);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.status(), 0xff, "untouched");
    assert_eq!(driver.used(), vec![(0, 0)]);
    driver.set_up(DESC, AVAIL, USED);
    driver
        .memory
        .write_obj(0u16, GuestAddress(USED + 2))
        .unwrap();
    // A device-writable header.
    driver.header(VIRTIO_BLK_T_IN, 0);
    driver.offer(
        &[(HEADER, 16, WRITE), (DATA, 512, WRITE), (STATUS, 1, WRITE)],
        None,
    );
    assert_eq!(driver.status(), STATUS_IOERR);
    // No status descriptor: returned with nothing written.
    driver.offer(&[(HEADER, 16, 0)], None);
    // A head index outside the queue: nothing to return it by.
    let effects = driver.offer(&[], Some(QUEUE + 3));
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.used(), vec![(0, 1), (3, 0)]);
    // A chain whose `next` loops back to itself is cut at the queue size.
    let head = driver.next_desc;
    driver.descriptor(head, (DATA, 512, NEXT | WRITE), head);
    driver.next_desc += 1;
    let effects = driver.offer(&[], Some(head));
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.used().len(), 3, "returned as malformed");
    // Far more heads offered than the queue holds: ignored.
    let far = driver.avail_idx.wrapping_add(100);
    driver
        .memory
        .write_obj(far, GuestAddress(AVAIL + 2))
        .unwrap();
    let effects = driver.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.used().len(), 3);
    // A reset and a fresh setup bring it back.
    driver.set_up(DESC, AVAIL + 0x4000, USED + 0x4000);
    let good = [(HEADER, 16, 0), (DATA, 512, WRITE), (STATUS, 1, WRITE)];
    for (i, &d) in good.iter().enumerate() {
        let flags = if i < 2 { d.2 | NEXT } else { d.2 };
        driver.descriptor(i as u16, (d.0, d.1, flags), i as u16 + 1);
    }
    driver
        .memory
        .write_obj(0u16, GuestAddress(AVAIL + 0x4004))
        .unwrap();
    driver
        .memory
        .write_obj(1u16, GuestAddress(AVAIL + 0x4002))
        .unwrap();
    let effects = driver.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_eq!(disk(&effects).len(), 1, "works again after a reset");
}

#[test]
fn rings_outside_ram_keep_the_queue_off() {
    let mut driver = Driver::new(false);
    driver.write(VIRTIO_MMIO_STATUS, 0);
    driver.write(VIRTIO_MMIO_QUEUE_SEL, 0);
    driver.write(VIRTIO_MMIO_QUEUE_NUM, 16);
    driver.write(VIRTIO_MMIO_QUEUE_DESC_LOW, 0);
    driver.write(VIRTIO_MMIO_QUEUE_DESC_HIGH, 1);
    driver.write(VIRTIO_MMIO_QUEUE_READY, 1);
    assert_eq!(driver.read(VIRTIO_MMIO_QUEUE_READY), 0);
    let effects = driver.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert!(effects.is_empty());
}

#[test]
fn a_completion_after_a_reset_is_dropped() {
    let mut driver = Driver::new(false);
    driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    driver
        .memory
        .write_obj(0u16, GuestAddress(AVAIL + 2))
        .unwrap();
    driver.set_up(DESC, AVAIL, USED);
    driver.complete(0, STATUS_OK, &[0; 512]);
    assert!(driver.used().is_empty());
    assert!(!driver.device.irq());
    // New requests get new numbers.
    let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(disk(&effects)[0].id, 1);
}
