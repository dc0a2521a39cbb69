//! COM1: a 16550A UART at port 0x3f8 on IRQ 4, run at 115200 8N1.
//!
//! Output is polled (wait for an empty transmit holding register before each
//! byte); input is interrupt-driven into a small queue.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::irq;
use crate::port::{inb, outb};
use crate::ring::ByteRing;

const BASE: u16 = 0x3f8;
/// THR on write, RBR on read; divisor low byte while LCR.DLAB is set.
const DATA: u16 = BASE;
/// Interrupt enable; divisor high byte while LCR.DLAB is set.
const IER: u16 = BASE + 1;
const FCR: u16 = BASE + 2;
const LCR: u16 = BASE + 3;
const MCR: u16 = BASE + 4;
const LSR: u16 = BASE + 5;

const IRQ: u8 = 4;
/// 115200 baud from the 1.8432 MHz clock.
const DIVISOR: u16 = 1;
const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
/// FIFOs on, both cleared, receive trigger level 1 byte (bits 7:6 = 0).
const FCR_ENABLE_AND_CLEAR: u8 = 0x07;
/// DTR and RTS, plus OUT2, which gates the IRQ line on a PC.
const MCR_DTR_RTS_OUT2: u8 = 0x0b;
const IER_RECEIVED_DATA: u8 = 0x01;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;

/// Bytes received and not yet read by the main loop.
static RECEIVED: ByteRing<64> = ByteRing::new();
/// The last byte written, so callers can tell whether a line is open.
static LAST_WRITTEN: AtomicU8 = AtomicU8::new(b'\n');

/// Programs the UART with all its interrupts off.
pub fn init() {
    outb(IER, 0);
    outb(LCR, LCR_DLAB);
    let [low, high] = DIVISOR.to_le_bytes();
    outb(DATA, low);
    outb(IER, high);
    outb(LCR, LCR_8N1);
    outb(FCR, FCR_ENABLE_AND_CLEAR);
    outb(MCR, MCR_DTR_RTS_OUT2);
}

/// Starts receiving on IRQ 4; read the bytes with [`read_byte`].
pub fn enable_receive_interrupts() {
    irq::register(IRQ, on_interrupt);
    outb(IER, IER_RECEIVED_DATA);
}

/// Drains the receive FIFO, which also lowers the IRQ line.
fn on_interrupt() {
    while inb(LSR) & LSR_DATA_READY != 0 {
        RECEIVED.push(inb(DATA));
    }
}

/// Transmits `byte` once the transmit holding register is free.
pub fn write_byte(byte: u8) {
    while inb(LSR) & LSR_THR_EMPTY == 0 {}
    outb(DATA, byte);
    LAST_WRITTEN.store(byte, Ordering::Relaxed);
}

/// The last byte written (a newline before any output).
pub fn last_written() -> u8 {
    LAST_WRITTEN.load(Ordering::Relaxed)
}

/// The oldest received byte not yet read.
pub fn read_byte() -> Option<u8> {
    RECEIVED.pop()
}

/// Whether received bytes are waiting.
pub fn has_input() -> bool {
    !RECEIVED.is_empty()
}
