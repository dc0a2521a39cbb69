//! The transport side by raw register accesses: reset, feature
//! negotiation, queue setup (virtio 1.x, 3.1.1 and 4.2.3), notification,
//! and waiting for the used ring.

use rt::virtio_mmio::{Device, reg};
use rt::{cpu, pit};

use crate::queue::{AVAIL_OFFSET, QUEUE_SIZE, SHARED, USED_OFFSET, UsedElem};

/// Device status bits.
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
/// VIRTIO_F_VERSION_1 (feature bit 32): bit 0 of feature word 1.
const VERSION_1_HIGH: u32 = 1;
/// Status reads to wait for a reset to complete.
const RESET_POLLS: u32 = 1000;

pub struct Driver {
    device: Device,
    /// Our copy of the available ring's index.
    avail_idx: u16,
    /// The used ring's index we have consumed up to.
    used_idx: u16,
}

impl Driver {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            avail_idx: 0,
            used_idx: 0,
        }
    }

    /// Resets the device and sets it up with its queue at `rings` (the
    /// descriptor table; the rings follow at the offsets of
    /// [`crate::queue`]), or in our shared page when `None`.
    pub fn setup(&mut self, rings: Option<u64>) -> Result<(), &'static str> {
        let device = &self.device;
        device.write(reg::STATUS, 0);
        // A reset is complete once the status reads 0 (4.2.3.1).
        if !(0..RESET_POLLS).any(|_| device.read(reg::STATUS) == 0) {
            return Err("reset did not complete");
        }
        SHARED.clear_rings();
        self.avail_idx = 0;
        self.used_idx = 0;

        device.write(reg::STATUS, ACKNOWLEDGE);
        device.write(reg::STATUS, ACKNOWLEDGE | DRIVER);
        device.write(reg::DEVICE_FEATURES_SEL, 1);
        if device.read(reg::DEVICE_FEATURES) & VERSION_1_HIGH == 0 {
            return Err("no VIRTIO_F_VERSION_1");
        }
        device.write(reg::DRIVER_FEATURES_SEL, 0);
        device.write(reg::DRIVER_FEATURES, 0);
        device.write(reg::DRIVER_FEATURES_SEL, 1);
        device.write(reg::DRIVER_FEATURES, VERSION_1_HIGH);
        device.write(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if device.read(reg::STATUS) & FEATURES_OK == 0 {
            return Err("features rejected");
        }

        device.write(reg::QUEUE_SEL, 0);
        if device.read(reg::QUEUE_READY) != 0 {
            return Err("queue ready after reset");
        }
        if device.read(reg::QUEUE_NUM_MAX) < QUEUE_SIZE as u32 {
            return Err("queue too small");
        }
        device.write(reg::QUEUE_NUM, QUEUE_SIZE as u32);
        let desc = rings.unwrap_or_else(|| SHARED.rings_addr());
        for (low, high, address) in [
            (reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, desc),
            (
                reg::QUEUE_DRIVER_LOW,
                reg::QUEUE_DRIVER_HIGH,
                desc + AVAIL_OFFSET,
            ),
            (
                reg::QUEUE_DEVICE_LOW,
                reg::QUEUE_DEVICE_HIGH,
                desc + USED_OFFSET,
            ),
        ] {
            device.write(low, address as u32);
            device.write(high, (address >> 32) as u32);
        }
        device.write(reg::QUEUE_READY, 1);
        device.write(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        Ok(())
    }

    /// Makes `head` available and notifies the device.
    pub fn submit(&mut self, head: u16) {
        let slot = usize::from(self.avail_idx) % QUEUE_SIZE;
        SHARED.avail.ring[slot].set(head);
        self.publish(self.avail_idx.wrapping_add(1));
    }

    /// Sets the available ring's index to `idx` (which may claim heads that
    /// were never written) and notifies the device.
    pub fn publish(&mut self, idx: u16) {
        self.avail_idx = idx;
        SHARED.avail.idx.set(idx);
        self.device.write(reg::QUEUE_NOTIFY, 0);
    }

    /// Sleeps until the device uses a chain or `ticks` timer ticks pass;
    /// returns the used element, if any.
    pub fn wait(&mut self, ticks: u64) -> Option<UsedElem> {
        let deadline = pit::ticks() + ticks;
        let seen = self.used_idx;
        cpu::wait_until(|| SHARED.used.idx.get() != seen || pit::ticks() >= deadline);
        if SHARED.used.idx.get() == seen {
            return None;
        }
        let element = SHARED.used.ring[usize::from(seen) % QUEUE_SIZE].get();
        self.used_idx = seen.wrapping_add(1);
        Some(element)
    }
}
