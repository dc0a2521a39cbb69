//! The CMOS real-time clock at ports 0x70 (index) and 0x71 (data).

use crate::port::{inb, outb};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const CENTURY: u8 = 0x32;
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
    read_date_time().1
}

/// Reads the date and time as seconds since the Unix epoch (the clock
/// holds UTC on ftvm, whose wall clock is a logged input), using the
/// century register (0x32) as PCs do.
pub fn read_unix_seconds() -> u64 {
    let (date, time) = read_date_time();
    let days = days_from_civil(date.year, date.month, date.day);
    let seconds = days * 86_400
        + i64::from(time.hours) * 3600
        + i64::from(time.minutes) * 60
        + i64::from(time.seconds);
    u64::try_from(seconds).unwrap_or(0)
}

struct Date {
    year: i64,
    month: i64,
    day: i64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn read_date_time() -> (Date, Time) {
    // After UIP reads clear, the registers hold still for at least 244 µs.
    while read(STATUS_A) & A_UPDATE_IN_PROGRESS != 0 {}
    let seconds = read(SECONDS);
    let minutes = read(MINUTES);
    let hours = read(HOURS);
    let day = read(DAY);
    let month = read(MONTH);
    let year = read(YEAR);
    let century = read(CENTURY);
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
    let date = Date {
        year: i64::from(decode(century)) * 100 + i64::from(decode(year)),
        month: i64::from(decode(month)),
        day: i64::from(decode(day)),
    };
    let time = Time {
        hours: hours_24,
        minutes: decode(minutes),
        seconds: decode(seconds),
    };
    (date, time)
}

fn read(register: u8) -> u8 {
    outb(INDEX, register);
    inb(DATA)
}
