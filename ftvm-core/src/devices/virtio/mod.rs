//! Virtio devices on the virtio-mmio transport (version 2), placed and
//! wired as docs/DESIGN.md §5 says: device n at `MMIO_START + n * 0x1000` on IRQ
//! 5, 6, 9, 10, 11. Queues are virtio-queue's split rings in guest memory,
//! which the devices read and write on the vCPU thread at exits only.

pub mod block;
mod bus;
mod mmio;
pub mod net;
#[cfg(test)]
mod test_driver;

pub use bus::{VirtioBus, VirtioBusState};
pub use mmio::{VirtioDevice, VirtioMmio, VirtioMmioState};

use crate::layout::MMIO_START;

/// Bytes of MMIO space per device.
pub const MMIO_SIZE: u64 = 0x1000;
/// The IRQ of each virtio slot, in order (7 is the spurious line, 8 the RTC's).
pub const IRQS: [u8; 5] = [5, 6, 9, 10, 11];

/// The MMIO base of virtio slot `slot`.
pub fn mmio_base(slot: usize) -> u64 {
    MMIO_START + slot as u64 * MMIO_SIZE
}

/// The command-line word that announces slot `slot` to the guest, in
/// Linux's form.
pub fn cmdline_word(slot: usize) -> String {
    format!(
        "virtio_mmio.device=4K@{:#x}:{}",
        mmio_base(slot),
        IRQS[slot]
    )
}
