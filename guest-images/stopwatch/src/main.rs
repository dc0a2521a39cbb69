//! Times, with the PIT, how long printing each of `lines=N` lines (default
//! 40) takes, and reports the slowest. The PIT runs at `hz=N` (default
//! 1000, at least 19).
//!
//! It has a bug, on purpose: the README's time-travel debugging walkthrough
//! finds it with gdb. Keep it.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use rt::print::{print, print_dec};
use rt::{BootInfo, pit};

rt::entry!(main);

/// The slowest line so far, in PIT counts.
static SLOWEST: AtomicU64 = AtomicU64::new(0);

fn main(boot: &BootInfo) -> u8 {
    let hz = boot.number("hz", 1000);
    let lines = boot.number("lines", 40);
    let Ok(hz @ 19..=pit::INPUT_HZ) = u32::try_from(hz) else {
        rt::fatal("stopwatch: hz must be between 19 and 1193182")
    };
    pit::start_periodic(hz);
    for line in 1..=lines {
        let before = pit::read_count();
        print("line ");
        print_dec(line);
        print(" of ");
        print_dec(lines);
        print(", timed by the PIT\n");
        let after = pit::read_count();
        // The PIT counts down.
        record(before.wrapping_sub(after));
    }
    print("slowest line: ");
    print_dec(SLOWEST.load(Ordering::Relaxed));
    print(" PIT counts\n");
    0
}

fn record(took: u16) {
    SLOWEST.fetch_max(u64::from(took), Ordering::Relaxed);
}
