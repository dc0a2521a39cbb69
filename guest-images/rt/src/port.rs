//! x86 port I/O.
//!
//! These are safe functions: on the ftvm platform no I/O port can reach
//! guest memory (there is no port-driven DMA), so a port access cannot break
//! the memory safety of the guest's Rust code. Each access is a VM exit.

use core::arch::asm;

/// Writes `value` to I/O port `port`.
#[inline]
pub fn outb(port: u16, value: u8) {
    // SAFETY: a port write touches no memory of this program (see module doc).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from I/O port `port`.
#[inline]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: a port read touches no memory of this program (see module doc).
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}
