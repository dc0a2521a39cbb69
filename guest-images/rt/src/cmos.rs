//! The CMOS real-time clock at ports 0x70 (index) and 0x71 (data).

use crate::port::{inb, outb};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;

const A_UPDATE_IN_PROGRESS: u8 = 0x80;
const B_24_HOUR: u8 = 0x02;
const B_BINARY: u8 = 0x04;
/// In 12-hour mode, the hours register's PM flag.
const HOURS_PM: u8 = 0x80;

/// A time of day from the RTC, in 24-hour form.
#[derive(Clone, Copy)]
pub struct Time {
    pub hours: u8,
    pub minutes: u8,
    pub seconds: u8,
}

/// Reads the time of day, outside an update cycle.
pub fn read_time() -> Time {
    // After UIP reads clear, the registers hold still for at least 244 µs.
    while read(STATUS_A) & A_UPDATE_IN_PROGRESS != 0 {}
    let seconds = read(SECONDS);
    let minutes = read(MINUTES);
    let hours = read(HOURS);
    let status_b = read(STATUS_B);

    let binary = status_b & B_BINARY != 0;
    let decode = |value: u8| {
        if binary {
            value
        } else {
            (value >> 4) * 10 + (value & 0x0f)
        }
    };
    let mut hours_24 = decode(hours & !HOURS_PM);
    if status_b & B_24_HOUR == 0 {
        // 12 AM is hour 0, 12 PM hour 12.
        hours_24 %= 12;
        if hours & HOURS_PM != 0 {
            hours_24 += 12;
        }
    }
    Time {
        hours: hours_24,
        minutes: decode(minutes),
        seconds: decode(seconds),
    }
}

fn read(register: u8) -> u8 {
    outb(INDEX, register);
    inb(DATA)
}
