//! Timer and serial-input guest.
//!
//! Runs the PIT at `hz=N` (default 20) and prints a line per timer tick with
//! the latched PIT count and the RTC time, echoing serial input in upper case
//! as it arrives; after `ticks=N` ticks (default 50) it exits with status 0.
//! Interrupt handlers only count and queue; all printing is in the main loop,
//! which sleeps with `hlt` between interrupts.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use rt::print::{print, print_dec, print_dec_padded, start_line};
use rt::{BootInfo, cmos, cpu, irq, pit, serial};

rt::entry!(main);

/// Timer interrupts taken so far.
static TICKS: AtomicU64 = AtomicU64::new(0);

fn on_timer() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

fn main(boot: &BootInfo) -> u8 {
    let hz = boot.number("hz", 20);
    let ticks = boot.number("ticks", 50);
    // The PIT's 16-bit divisor bounds the rate.
    let Ok(hz_u32 @ 19..=pit::INPUT_HZ) = u32::try_from(hz) else {
        rt::fatal("ticker: hz must be between 19 and 1193182")
    };

    print("ticker: ");
    print_dec(ticks);
    print(" ticks at ");
    print_dec(hz);
    print(" Hz\n");

    irq::register(pit::IRQ, on_timer);
    serial::enable_receive_interrupts();
    pit::start_periodic(hz_u32);

    let mut printed = 0;
    while printed < ticks {
        let mut taken = 0;
        cpu::wait_until(|| {
            taken = TICKS.load(Ordering::Relaxed);
            taken > printed || serial::has_input()
        });
        while let Some(byte) = serial::read_byte() {
            echo(byte);
        }
        while printed < taken.min(ticks) {
            printed += 1;
            print_tick(printed);
        }
    }
    start_line();
    print("ticker: done\n");
    0
}

/// Echoes a received byte in upper case, CR as CR LF.
fn echo(byte: u8) {
    serial::write_byte(byte.to_ascii_uppercase());
    if byte == b'\r' {
        serial::write_byte(b'\n');
    }
}

fn print_tick(tick: u64) {
    start_line();
    print("tick ");
    print_dec(tick);
    print(" pit=");
    print_dec(u64::from(pit::read_count()));
    let time = cmos::read_time();
    print(" rtc=");
    print_dec_padded(u64::from(time.hours), 2);
    print(":");
    print_dec_padded(u64::from(time.minutes), 2);
    print(":");
    print_dec_padded(u64::from(time.seconds), 2);
    print("\n");
}
