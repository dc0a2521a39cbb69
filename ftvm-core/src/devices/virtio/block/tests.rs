//! The block device through its transport, driven the way a driver would:
//! registers written, a split queue laid out by hand in guest memory, and
//! malformed requests that must be refused without harm.

use ft_logging::{DiskInfo, DiskOp, DiskRequest, STATUS_IOERR, STATUS_OK, STATUS_UNSUPP};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress};

use virtio_queue::{Queue, QueueT};

use super::super::test_driver::{Driver, NEXT, QUEUE, RAM, WRITE};
use super::super::{VirtioDevice, VirtioMmio};
use super::{Block, BlockState};
use crate::effect::Effect;
use crate::memory::{PAGE_SIZE, take_vmm_dirty};
use crate::state::through_bytes;

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADER: u64 = 0x8000;
const DATA: u64 = 0x9000;
const STATUS: u64 = 0xf000;

fn block_driver(read_only: bool) -> Driver<Block> {
    let block = Block::new(DiskInfo {
        sectors: 64,
        read_only,
    });
    Driver::new(block, &[(DESC, AVAIL, USED)])
}

impl Driver<Block> {
    fn header(&self, kind: u32, sector: u64) {
        self.memory
            .write_obj(kind.to_le(), GuestAddress(HEADER))
            .unwrap();
        self.memory
            .write_obj(sector.to_le(), GuestAddress(HEADER + 8))
            .unwrap();
        self.memory.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    /// A well-formed request: header, data buffers, status.
    fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32, u16)]) -> Vec<Effect> {
        self.header(kind, sector);
        let mut chain = vec![(HEADER, 16, 0)];
        chain.extend_from_slice(data);
        chain.push((STATUS, 1, WRITE));
        self.offer(0, &chain, None)
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
    let mut driver = block_driver(false);
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
    let read_only = block_driver(true).read(VIRTIO_MMIO_DEVICE_FEATURES);
    assert_eq!(read_only, (1 << 9) | (1 << 5), "FLUSH and RO");
}

#[test]
fn a_legacy_driver_does_not_get_features_ok() {
    let mut driver = block_driver(false);
    driver.write(VIRTIO_MMIO_STATUS, 0);
    driver.write(VIRTIO_MMIO_STATUS, 1 | 2);
    driver.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
    assert_eq!(driver.read(VIRTIO_MMIO_STATUS), 1 | 2);
}

#[test]
fn a_read_goes_to_the_host_and_its_completion_fills_the_buffers() {
    let mut driver = block_driver(false);
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
    assert!(!driver.device.irq() && driver.used(0).is_empty(), "not yet");
    let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    driver.complete(0, STATUS_OK, &data);
    assert_eq!(driver.used(0), vec![(0, 1025)]);
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
    let mut driver = block_driver(false);
    driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    driver.complete(0, STATUS_OK, &[1; 100]);
    assert_eq!(driver.status(), STATUS_IOERR);
    assert_eq!(driver.used(0), vec![(0, 1)]);
}

#[test]
fn writes_and_flushes_go_to_the_host_with_their_data() {
    let mut driver = block_driver(false);
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
    assert_eq!(driver.used(0), vec![(3, 1), (0, 1)], "in completion order");
}

#[test]
fn a_read_only_disk_fails_writes_at_once_and_never_asks_the_host() {
    let mut driver = block_driver(true);
    let effects = driver.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, 0)]);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.status(), STATUS_IOERR);
    assert_eq!(driver.used(0), vec![(0, 1)]);
    assert!(driver.device.irq());
    let effects = driver.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.status(), STATUS_OK);
}

#[test]
fn get_id_and_unknown_requests_are_answered_by_the_device() {
    let mut driver = block_driver(false);
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
    assert_eq!(driver.used(0), vec![(0, 21), (3, 1)]);
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
        let mut driver = block_driver(false);
        let effects = driver.request(kind, sector, &[buffer]);
        assert!(disk(&effects).is_empty(), "{name}");
        assert_eq!(driver.status(), STATUS_IOERR, "{name}");
        assert_eq!(driver.used(0).len(), 1, "{name}");
        // The device still serves a good request.
        let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
        assert_eq!(disk(&effects).len(), 1, "{name}: recovery");
    }
}

#[test]
fn chains_without_a_usable_shape_are_returned_or_ignored() {
    let mut driver = block_driver(false);
    // Over 4 GiB in all: virtio-queue ends the chain before the buffer, so
    // it has no status byte and is returned unanswered.
    let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, u32::MAX, WRITE)]);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.status(), 0xff, "untouched");
    assert_eq!(driver.used(0), vec![(0, 0)]);
    driver.set_up(&[(DESC, AVAIL, USED)]);
    driver
        .memory
        .write_obj(0u16, GuestAddress(USED + 2))
        .unwrap();
    // A device-writable header.
    driver.header(VIRTIO_BLK_T_IN, 0);
    driver.offer(
        0,
        &[(HEADER, 16, WRITE), (DATA, 512, WRITE), (STATUS, 1, WRITE)],
        None,
    );
    assert_eq!(driver.status(), STATUS_IOERR);
    // No status descriptor: returned with nothing written.
    driver.offer(0, &[(HEADER, 16, 0)], None);
    // A head index outside the queue: nothing to return it by.
    let effects = driver.offer(0, &[], Some(QUEUE + 3));
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.used(0), vec![(0, 1), (3, 0)]);
    // A chain whose `next` loops back to itself is cut at the queue size.
    let head = driver.claim_descriptor(0);
    driver.descriptor(0, head, (DATA, 512, NEXT | WRITE), head);
    let effects = driver.offer(0, &[], Some(head));
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.used(0).len(), 3, "returned as malformed");
    // Far more heads offered than the queue holds: ignored.
    driver.jump_avail_index(0, 100);
    let effects = driver.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert!(disk(&effects).is_empty());
    assert_eq!(driver.used(0).len(), 3);
    // A reset and a fresh setup bring it back.
    driver.set_up(&[(DESC, AVAIL + 0x4000, USED + 0x4000)]);
    let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(disk(&effects).len(), 1, "works again after a reset");
}

#[test]
fn rings_outside_ram_keep_the_queue_off() {
    let mut driver = block_driver(false);
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
    let mut driver = block_driver(false);
    driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    driver
        .memory
        .write_obj(0u16, GuestAddress(AVAIL + 2))
        .unwrap();
    driver.set_up(&[(DESC, AVAIL, USED)]);
    driver.complete(0, STATUS_OK, &[0; 512]);
    assert!(driver.used(0).is_empty());
    assert!(!driver.device.irq());
    // New requests get new numbers.
    let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(disk(&effects)[0].id, 1);
}

/// The pages of `addresses`, as the VMM's dirty bitmap reports them.
fn pages(addresses: &[u64]) -> Vec<u64> {
    let mut words = vec![0u64; 1];
    for &addr in addresses {
        let page = addr / PAGE_SIZE;
        words[page as usize / 64] |= 1 << (page % 64);
    }
    words
}

#[test]
fn a_restored_block_device_completes_the_request_in_flight() {
    let mut driver = block_driver(false);
    let effects = driver.request(VIRTIO_BLK_T_IN, 3, &[(DATA, 1024, WRITE)]);
    assert_eq!(disk(&effects)[0].id, 0);
    let state = through_bytes(&driver.device.state());
    assert_eq!(state.device().requests_in_flight().collect::<Vec<_>>(), [0]);
    let info = DiskInfo {
        sectors: 64,
        read_only: false,
    };
    driver.device =
        VirtioMmio::from_state(Block::new(info), driver.memory.clone(), &state).unwrap();
    assert_eq!(driver.device.state(), state);
    assert!(driver.device.device().has_pending());
    take_vmm_dirty(&driver.memory);
    driver.complete(0, STATUS_OK, &[0x5a; 1024]);
    assert_eq!(driver.used(0), vec![(0, 1025)]);
    assert_eq!(driver.status(), STATUS_OK);
    let mut data = [0; 1024];
    driver
        .memory
        .read_slice(&mut data, GuestAddress(DATA))
        .unwrap();
    assert_eq!(data, [0x5a; 1024]);
    assert!(driver.device.irq());
    // The data, the status byte and the used ring were the VMM's writes.
    assert_eq!(take_vmm_dirty(&driver.memory), pages(&[DATA, STATUS, USED]));
    // Numbering goes on where it was.
    let effects = driver.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, WRITE)]);
    assert_eq!(disk(&effects)[0].id, 1);
}

#[test]
fn the_vmm_reports_the_pages_it_answers_in() {
    let mut driver = block_driver(false);
    take_vmm_dirty(&driver.memory);
    driver.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA + 0x2000, 20, WRITE)]);
    // The driver wrote the header, descriptor and ring pages; the device the
    // answer, the status byte and the used ring.
    let dirty = take_vmm_dirty(&driver.memory);
    for page in [DATA + 0x2000, STATUS, USED] {
        assert_ne!(dirty[0] & pages(&[page])[0], 0, "page of {page:#x}");
    }
}

#[test]
fn a_block_state_no_driver_reaches_is_refused() {
    let mut driver = block_driver(false);
    driver.request(VIRTIO_BLK_T_IN, 3, &[(DATA, 1024, WRITE)]);
    let good = through_bytes(&driver.device.state());
    let restore = |state: &BlockState| {
        let mut block = Block::new(DiskInfo {
            sectors: 64,
            read_only: false,
        });
        let queue = Queue::new(256).unwrap();
        block.restore(state, &[queue])
    };
    restore(good.device()).unwrap();
    let mut twice = good.device().clone();
    twice.pending.push(twice.pending[0].clone());
    twice.next_id = 5;
    let mut ahead = good.device().clone();
    ahead.next_id = 0;
    let mut huge = good.device().clone();
    huge.pending[0].buffers = vec![(DATA, u32::MAX); 2];
    for (state, what) in [
        (twice, "two requests"),
        (ahead, "numbered ahead"),
        (huge, "larger than any read"),
    ] {
        let error = restore(&state).unwrap_err();
        assert!(error.to_string().contains(what), "{error}");
    }
}
