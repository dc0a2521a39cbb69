//! The 8254 PIT's channel 0, wired to IRQ 0.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::irq;
use crate::port::{inb, outb};

const CHANNEL0: u16 = 0x40;
const COMMAND: u16 = 0x43;

/// The PIT's input clock.
pub const INPUT_HZ: u32 = 1_193_182;
/// The IRQ line of channel 0.
pub const IRQ: u8 = 0;

/// Channel 0, low then high byte, mode 2 (rate generator), binary.
const COMMAND_CHANNEL0_RATE: u8 = 0x34;
/// Channel 0 counter latch.
const COMMAND_CHANNEL0_LATCH: u8 = 0x00;

/// Makes channel 0 raise IRQ 0 periodically, `hz` times a second as near as
/// a 16-bit divisor allows (19 Hz to 1.19 MHz; rates outside are clamped).
pub fn start_periodic(hz: u32) {
    let divisor = (INPUT_HZ + hz / 2) / hz.max(1);
    // A reload value of 0 counts 65536.
    let reload = divisor.clamp(1, 0x1_0000) as u16;
    let [low, high] = reload.to_le_bytes();
    outb(COMMAND, COMMAND_CHANNEL0_RATE);
    outb(CHANNEL0, low);
    outb(CHANNEL0, high);
}

/// Timer interrupts taken since [`start_ticks`].
static TICKS: AtomicU64 = AtomicU64::new(0);

fn on_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Starts the timer at `hz` (as [`start_periodic`]) and counts its
/// interrupts; read the count with [`ticks`].
pub fn start_ticks(hz: u32) {
    irq::register(IRQ, on_tick);
    start_periodic(hz);
}

/// Timer interrupts counted since [`start_ticks`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Latches channel 0 and reads its current count.
pub fn read_count() -> u16 {
    outb(COMMAND, COMMAND_CHANNEL0_LATCH);
    let low = inb(CHANNEL0);
    let high = inb(CHANNEL0);
    u16::from_le_bytes([low, high])
}
