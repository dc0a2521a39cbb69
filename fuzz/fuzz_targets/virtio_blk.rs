//! Any bytes as what a guest's virtio-blk driver could do through the
//! platform: set the device up, write anything into its queue's memory
//! (descriptors, rings, request headers), notify, have requests completed,
//! poke registers. The request parser refuses what is malformed and never
//! panics, and every request it makes is within the disk.
#![no_main]

use ft_logging::{DiskInfo, DiskOp, STATUS_IOERR, STATUS_OK};
use ftvm_core::effect::Effect;
use ftvm_core::layout::MMIO_START;
use ftvm_core::platform::{Devices, Platform};
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_mmio::*;
use ftvm_core::memory::GuestRam;
use vm_memory::{Bytes, GuestAddress};

const RAM: usize = 64 << 10;
const SECTORS: u64 = 64;
/// Where the driver puts queue 0's descriptor table and rings.
const RINGS: [(u32, u64); 3] = [
    (VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000),
    (VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x2000),
    (VIRTIO_MMIO_QUEUE_USED_LOW, 0x3000),
];

struct Driver {
    platform: Platform,
    memory: GuestRam,
    effects: Vec<Effect>,
}

impl Driver {
    fn write(&mut self, register: u32, value: u32) {
        let address = MMIO_START + u64::from(register);
        self.platform
            .mmio_write(address, &value.to_le_bytes(), &mut self.effects);
    }

    fn read(&mut self, register: u32) -> u32 {
        let mut data = [0; 4];
        self.platform
            .mmio_read(MMIO_START + u64::from(register), &mut data);
        u32::from_le_bytes(data)
    }

    fn set_up(&mut self, queue_size: u32) {
        self.write(VIRTIO_MMIO_STATUS, 0);
        self.write(VIRTIO_MMIO_STATUS, 1 | 2);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write(VIRTIO_MMIO_DRIVER_FEATURES, 1);
        self.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8);
        self.write(VIRTIO_MMIO_QUEUE_SEL, 0);
        self.write(VIRTIO_MMIO_QUEUE_NUM, queue_size);
        for (low, address) in RINGS {
            self.write(low, address as u32);
            self.write(low + 4, 0);
        }
        self.write(VIRTIO_MMIO_QUEUE_READY, 1);
        self.write(VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
    }

    /// Completes every request the device made, checking it first.
    fn complete(&mut self, ok: bool) {
        for effect in std::mem::take(&mut self.effects) {
            let Effect::Disk(request) = effect else {
                continue;
            };
            let data = match request.op {
                DiskOp::Read { sector, len } => {
                    assert!(sector + u64::from(len).div_ceil(512) <= SECTORS, "{request:?}");
                    vec![0x5a; len as usize]
                }
                DiskOp::Write { sector, ref data } => {
                    assert!(sector + (data.len() as u64).div_ceil(512) <= SECTORS, "{request:?}");
                    Vec::new()
                }
                DiskOp::Flush => Vec::new(),
            };
            let status = if ok { STATUS_OK } else { STATUS_IOERR };
            self.platform.complete_disk(request.id, status, &data);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let memory = GuestRam::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let disk = DiskInfo {
        sectors: SECTORS,
        read_only: first & 1 == 1,
    };
    let devices = Devices {
        disk: Some(disk),
        net: None,
    };
    let mut driver = Driver {
        platform: Platform::new(devices, &memory),
        memory,
        effects: Vec::new(),
    };
    driver.set_up(u32::from(first >> 1).clamp(1, 64));
    // Each step: an opcode, then what it needs.
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 6 {
            0 => {
                // Bytes into guest memory at an offset in the first 64 KiB.
                let [hi, lo, len, tail @ ..] = rest else { return };
                let at = u64::from(u16::from_be_bytes([*hi, *lo]));
                let len = usize::from(*len).min(tail.len());
                let _ = driver.memory.write_slice(&tail[..len], GuestAddress(at));
                rest = &tail[len..];
            }
            1 => driver.write(VIRTIO_MMIO_QUEUE_NOTIFY, 0),
            2 => driver.complete(true),
            3 => driver.complete(false),
            4 => {
                let [register, a, b, c, d, tail @ ..] = rest else { return };
                let value = u32::from_le_bytes([*a, *b, *c, *d]);
                driver.write(u32::from(*register) & 0xfc, value);
                rest = tail;
            }
            _ => {
                let [register, tail @ ..] = rest else { return };
                driver.read(u32::from(*register) & 0xfc);
                rest = tail;
            }
        }
    }
});
