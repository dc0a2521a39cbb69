//! Benchmark guest: writes a byte to port 0x80 `n=N` times (default 100000)
//! and exits with status 0. Each write is one VM exit. Prints nothing.
#![no_std]
#![no_main]

use rt::BootInfo;

rt::entry!(main);

/// The POST diagnostic port: writes to it have no effect.
const POST_PORT: u16 = 0x80;

fn main(boot: &BootInfo) -> u8 {
    for _ in 0..boot.number("n", 100_000) {
        rt::port::outb(POST_PORT, 0);
    }
    0
}
