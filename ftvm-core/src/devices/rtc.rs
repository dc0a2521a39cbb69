//! Motorola MC146818 CMOS real-time clock at 0x70 (index) / 0x71 (data).
//!
//! The clock is the wall-clock time at virtual time zero (a logged input)
//! plus the virtual time, plus whatever adjustment the guest made by
//! writing the time registers. Update-in-progress (register A bit 7) is
//! computed from the same time, so it is as deterministic as the clock.
//!
//! No interrupts are modelled: the periodic, alarm and update-ended flags
//! never set, register C reads 0 and IRQ 8 is never raised. The enable bits
//! in register B are stored for the guest to read back. The divider bits
//! of register A are stored but do not stop the clock, and daylight saving
//! (register B bit 0) is stored but never applied. A change of the data
//! mode or the 12/24-hour mode shows the current time in the new format
//! at once (the chip would need the guest to rewrite the time).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::state::{InvalidState, check};

const PORT_INDEX: u16 = 0x70;
const PORT_DATA: u16 = 0x71;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24_HOUR: u8 = 0x02;
const D_VALID_RAM_AND_TIME: u8 = 0x80;
const HOUR_PM: u8 = 0x80;

/// 32.768 kHz divider, no periodic interrupt.
const POWER_ON_A: u8 = 0x26;
const POWER_ON_B: u8 = B_24_HOUR;

const NS_PER_SEC: u128 = 1_000_000_000;
/// UIP rises 244 µs before each update and the update takes 1984 µs.
const UIP_BEFORE_NS: u128 = 244_000;
const UIP_AFTER_NS: u128 = 1_984_000;

const SECS_PER_DAY: i64 = 86_400;

// Guest misuses logged once per RTC (bits of `Rtc::warned`).
const WARN_PORT: u8 = 1 << 0;
const WARN_READ_ONLY: u8 = 1 << 1;
const WARN_BAD_TIME: u8 = 1 << 2;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`). A day past the month's end runs into the next month.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u8, day as u8)
}

/// Day of week of a day count, 1 = Sunday (1970-01-01 was a Thursday).
fn weekday_of(days: i64) -> u8 {
    ((days + 4).rem_euclid(7) + 1) as u8
}

/// The clock as the time registers hold it, in binary and 24-hour form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct DateTime {
    year: i64,
    month: u8,
    day: u8,
    weekday: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    fn from_unix(secs: i64, weekday_offset: u8) -> Self {
        let days = secs.div_euclid(SECS_PER_DAY);
        let of_day = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            weekday: (weekday_of(days) - 1 + weekday_offset) % 7 + 1,
            hour: (of_day / 3600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
        }
    }

    fn days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    fn to_unix(self) -> i64 {
        self.days() * SECS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// How far the weekday register is ahead of the date's real weekday.
    fn weekday_offset(&self) -> u8 {
        (self.weekday + 7 - weekday_of(self.days())) % 7
    }
}

/// The MC146818 with its 114 bytes of battery-backed RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtc {
    now_ns: u64,
    wall_at_zero_ns: u64,
    /// The guest's adjustment of the clock, in whole seconds so that
    /// updates stay on the wall clock's second boundaries.
    offset_secs: i64,
    /// The weekday is a register of its own on the chip, which the guest
    /// may set to anything.
    weekday_offset: u8,
    /// While register B's SET bit is on, the time registers hold still and
    /// take the guest's writes; the clock resumes from them when it clears.
    held: Option<DateTime>,
    index: u8,
    reg_a: u8,
    reg_b: u8,
    /// Registers stored as written: the alarms and the RAM from 0x0e.
    cmos: [u8; 128],
    warned: u8,
}

/// The state of the MC146818: its time base (virtual time, the wall clock
/// at virtual time zero, the guest's adjustment), the time held while SET
/// is on, the index register, registers A and B, and its RAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcState {
    now_ns: u64,
    wall_at_zero_ns: u64,
    offset_secs: i64,
    weekday_offset: u8,
    held: Option<DateTime>,
    index: u8,
    reg_a: u8,
    reg_b: u8,
    #[serde(with = "serde_bytes")]
    cmos: [u8; 128],
}

/// Adjustments beyond 35 000 years are no guest's; bounding them keeps the
/// date arithmetic within `i64`.
const MAX_OFFSET_SECS: i64 = 1 << 40;
const MAX_YEAR: i64 = 1_000_000;

impl DateTime {
    /// Whether every field is one the registers can hold.
    fn valid(&self) -> bool {
        self.year.abs() <= MAX_YEAR
            && (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && (1..=7).contains(&self.weekday)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }
}

impl Default for Rtc {
    fn default() -> Self {
        Self::new()
    }
}

impl Rtc {
    /// Power-on state: the clock at the Unix epoch until
    /// [`Rtc::set_wall_clock`], 24-hour BCD, RAM zeroed.
    pub fn new() -> Self {
        Rtc {
            now_ns: 0,
            wall_at_zero_ns: 0,
            offset_secs: 0,
            weekday_offset: 0,
            held: None,
            index: 0,
            reg_a: POWER_ON_A,
            reg_b: POWER_ON_B,
            cmos: [0; 128],
            warned: 0,
        }
    }

    /// Its state, for a snapshot.
    pub fn state(&self) -> RtcState {
        RtcState {
            now_ns: self.now_ns,
            wall_at_zero_ns: self.wall_at_zero_ns,
            offset_secs: self.offset_secs,
            weekday_offset: self.weekday_offset,
            held: self.held,
            index: self.index,
            reg_a: self.reg_a,
            reg_b: self.reg_b,
            cmos: self.cmos,
        }
    }

    /// The RTC in `state`, refused when no guest could have reached it.
    pub fn from_state(state: &RtcState) -> Result<Self, InvalidState> {
        check(
            state.offset_secs.abs() <= MAX_OFFSET_SECS && state.weekday_offset < 7,
            "MC146818",
            "a clock adjustment out of range",
        )?;
        check(
            state.held.is_none_or(|held| held.valid()),
            "MC146818",
            "a held time that is no date",
        )?;
        check(
            state.index < 0x80 && state.reg_a & A_UIP == 0,
            "MC146818",
            "an index or register A out of range",
        )?;
        Ok(Rtc {
            now_ns: state.now_ns,
            wall_at_zero_ns: state.wall_at_zero_ns,
            offset_secs: state.offset_secs,
            weekday_offset: state.weekday_offset,
            held: state.held,
            index: state.index,
            reg_a: state.reg_a,
            reg_b: state.reg_b,
            cmos: state.cmos,
            warned: 0,
        })
    }

    fn warn_once(&mut self, bit: u8) -> bool {
        let first = self.warned & bit == 0;
        self.warned |= bit;
        first
    }

    /// Wall-clock time at virtual time zero (ns since the Unix epoch; a
    /// logged input applied at boot).
    pub fn set_wall_clock(&mut self, unix_ns_at_zero: u64) {
        self.wall_at_zero_ns = unix_ns_at_zero;
    }

    /// Moves the RTC's time to `now_ns` (virtual ns since boot; earlier
    /// values are ignored).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    fn wall_ns(&self) -> u128 {
        u128::from(self.wall_at_zero_ns) + u128::from(self.now_ns)
    }

    fn running_secs(&self) -> i64 {
        (self.wall_ns() / NS_PER_SEC) as i64 + self.offset_secs
    }

    fn now(&self) -> DateTime {
        self.held
            .unwrap_or_else(|| DateTime::from_unix(self.running_secs(), self.weekday_offset))
    }

    fn set_now(&mut self, time: DateTime) {
        if self.held.is_some() {
            self.held = Some(time);
        } else {
            self.offset_secs = time.to_unix() - (self.wall_ns() / NS_PER_SEC) as i64;
            self.weekday_offset = time.weekday_offset();
        }
    }

    fn update_in_progress(&self) -> bool {
        let phase = self.wall_ns() % NS_PER_SEC;
        self.held.is_none() && !(UIP_AFTER_NS..NS_PER_SEC - UIP_BEFORE_NS).contains(&phase)
    }

    fn binary(&self) -> bool {
        self.reg_b & B_BINARY != 0
    }

    fn encode(&self, value: u8) -> u8 {
        if self.binary() {
            value
        } else {
            ((value / 10) << 4) | (value % 10)
        }
    }

    fn decode(&self, value: u8) -> Option<u8> {
        if self.binary() {
            return Some(value);
        }
        let (tens, ones) = (value >> 4, value & 0xf);
        (tens <= 9 && ones <= 9).then_some(tens * 10 + ones)
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b & B_24_HOUR != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { HOUR_PM } else { 0 };
        let hour12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(hour12) | pm
    }

    fn decode_hour(&self, value: u8) -> Option<u8> {
        if self.reg_b & B_24_HOUR != 0 {
            return self.decode(value).filter(|&h| h < 24);
        }
        let hour12 = self
            .decode(value & !HOUR_PM)
            .filter(|h| (1..=12).contains(h))?;
        let pm = if value & HOUR_PM != 0 { 12 } else { 0 };
        Some(hour12 % 12 + pm)
    }

    fn read_register(&self, index: u8) -> u8 {
        let now = self.now();
        match index {
            REG_SECONDS => self.encode(now.second),
            REG_MINUTES => self.encode(now.minute),
            REG_HOURS => self.encode_hour(now.hour),
            REG_WEEKDAY => self.encode(now.weekday),
            REG_DAY => self.encode(now.day),
            REG_MONTH => self.encode(now.month),
            REG_YEAR => self.encode(now.year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(now.year.div_euclid(100).clamp(0, 99) as u8),
            REG_A => self.reg_a | if self.update_in_progress() { A_UIP } else { 0 },
            REG_B => self.reg_b,
            REG_C => 0,
            REG_D => D_VALID_RAM_AND_TIME,
            _ => self.cmos[usize::from(index)],
        }
    }

    /// Sets one field of the clock from a guest write, or None when the
    /// value is not a valid time in the current mode.
    fn write_time(&mut self, index: u8, value: u8) -> Option<()> {
        let field = |range: RangeInclusive<u8>| self.decode(value).filter(|v| range.contains(v));
        let mut time = self.now();
        match index {
            REG_SECONDS => time.second = field(0..=59)?,
            REG_MINUTES => time.minute = field(0..=59)?,
            REG_HOURS => time.hour = self.decode_hour(value)?,
            REG_WEEKDAY => time.weekday = field(1..=7)?,
            REG_DAY => time.day = field(1..=31)?,
            REG_MONTH => time.month = field(1..=12)?,
            REG_YEAR => time.year = time.year.div_euclid(100) * 100 + i64::from(field(0..=99)?),
            _ => time.year = i64::from(field(0..=99)?) * 100 + time.year.rem_euclid(100),
        }
        self.set_now(time);
        Some(())
    }

    fn write_register(&mut self, index: u8, value: u8) {
        match index {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                if self.write_time(index, value).is_none() && self.warn_once(WARN_BAD_TIME) {
                    warn!(
                        index,
                        value, "MC146818: invalid time value written, ignored"
                    );
                }
            }
            REG_A => self.reg_a = value & !A_UIP,
            REG_B => {
                let was_set = self.reg_b & B_SET != 0;
                let mut value = value;
                match (was_set, value & B_SET != 0) {
                    (false, true) => {
                        self.held = Some(self.now());
                        // Setting SET also clears the update-ended enable.
                        value &= !B_UIE;
                    }
                    (true, false) => {
                        if let Some(time) = self.held.take() {
                            self.set_now(time);
                        }
                    }
                    _ => {}
                }
                self.reg_b = value;
            }
            REG_C | REG_D => {
                if self.warn_once(WARN_READ_ONLY) {
                    warn!(index, value, "MC146818: write to a read-only register");
                }
            }
            _ => self.cmos[usize::from(index)] = value,
        }
    }

    /// Port read: 0x70 reads 0xff (the index is write-only), 0x71 the
    /// selected register.
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            PORT_INDEX => 0xff,
            PORT_DATA => self.read_register(self.index),
            _ => {
                if self.warn_once(WARN_PORT) {
                    warn!(port, "MC146818: read of an unknown port");
                }
                0xff
            }
        }
    }

    /// Port write: 0x70 selects a register (bit 7, the NMI mask, is
    /// ignored), 0x71 writes it.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            PORT_INDEX => self.index = value & 0x7f,
            PORT_DATA => self.write_register(self.index, value),
            _ => {
                if self.warn_once(WARN_PORT) {
                    warn!(port, value, "MC146818: write to an unknown port");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// 2023-11-14 22:13:20 UTC, a Tuesday.
    const T0: u64 = 1_700_000_000;

    fn rtc_at(unix_secs: u64) -> Rtc {
        let mut rtc = Rtc::new();
        rtc.set_wall_clock(unix_secs * SEC);
        rtc
    }

    fn get(rtc: &mut Rtc, index: u8) -> u8 {
        rtc.write(0x70, index);
        rtc.read(0x71)
    }

    fn set(rtc: &mut Rtc, index: u8, value: u8) {
        rtc.write(0x70, index);
        rtc.write(0x71, value);
    }

    fn clock(rtc: &mut Rtc) -> [u8; 8] {
        [0x32, 0x09, 0x08, 0x07, 0x06, 0x04, 0x02, 0x00].map(|index| get(rtc, index))
    }

    #[test]
    fn civil_date_conversions() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_675, (2023, 11, 14)),
            (47_541, (2100, 3, 1)),
        ] {
            assert_eq!(civil_from_days(days), date);
            assert_eq!(days_from_civil(date.0, date.1, date.2), days);
        }
        // Every day over four centuries round-trips and follows the last.
        let mut prev = civil_from_days(-100_000);
        for days in -99_999..100_000 {
            let date = civil_from_days(days);
            assert_eq!(days_from_civil(date.0, date.1, date.2), days);
            assert!(date > prev);
            prev = date;
        }
        assert_eq!(weekday_of(0), 5, "Thursday");
        assert_eq!(weekday_of(19_675), 3, "Tuesday");
    }

    #[test]
    fn power_on_registers() {
        let mut rtc = Rtc::new();
        assert_eq!(get(&mut rtc, 0x0a) & 0x7f, 0x26);
        assert_eq!(get(&mut rtc, 0x0b), 0x02);
        assert_eq!(get(&mut rtc, 0x0c), 0x00);
        assert_eq!(get(&mut rtc, 0x0d), 0x80);
        assert_eq!(rtc.read(0x70), 0xff);
        assert_eq!(
            clock(&mut rtc),
            [0x19, 0x70, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00]
        );
    }

    #[test]
    fn bcd_and_binary_encode_the_same_instant() {
        let mut rtc = rtc_at(T0);
        // century, year, month, day, weekday, hour, minute, second
        assert_eq!(
            clock(&mut rtc),
            [0x20, 0x23, 0x11, 0x14, 0x03, 0x22, 0x13, 0x20]
        );
        set(&mut rtc, 0x0b, 0x02 | 0x04);
        assert_eq!(clock(&mut rtc), [20, 23, 11, 14, 3, 22, 13, 20]);
    }

    #[test]
    fn twelve_hour_mode() {
        let mut rtc = rtc_at(T0);
        set(&mut rtc, 0x0b, 0x00);
        assert_eq!(get(&mut rtc, 0x04), 0x80 | 0x10, "10 PM in BCD");
        set(&mut rtc, 0x0b, 0x04);
        assert_eq!(get(&mut rtc, 0x04), 0x80 | 10, "10 PM in binary");
        // Midnight and noon are 12.
        let mut rtc = rtc_at(T0 - 22 * 3600);
        set(&mut rtc, 0x0b, 0x00);
        assert_eq!(get(&mut rtc, 0x04), 0x12);
        rtc.advance(12 * 3600 * SEC);
        assert_eq!(get(&mut rtc, 0x04), 0x80 | 0x12);
        // Writing hours in 12-hour mode.
        for (written, hour24) in [(0x01, 0x01), (0x12, 0x00), (0x92, 0x12), (0x91, 0x23)] {
            set(&mut rtc, 0x0b, 0x00);
            set(&mut rtc, 0x04, written);
            set(&mut rtc, 0x0b, 0x02);
            assert_eq!(get(&mut rtc, 0x04), hour24, "{written:#x}");
        }
        // 0 and 13 are not 12-hour values.
        set(&mut rtc, 0x0b, 0x00);
        set(&mut rtc, 0x04, 0x00);
        set(&mut rtc, 0x04, 0x13);
        assert_eq!(get(&mut rtc, 0x04), 0x80 | 0x11);
    }

    #[test]
    fn seconds_roll_over_as_time_advances() {
        let mut rtc = Rtc::new();
        rtc.set_wall_clock(T0 * SEC + 999_000_000);
        assert_eq!(get(&mut rtc, 0x00), 0x20);
        rtc.advance(999_999);
        assert_eq!(get(&mut rtc, 0x00), 0x20);
        rtc.advance(1_000_000);
        assert_eq!(get(&mut rtc, 0x00), 0x21);
        // Time never goes back.
        rtc.advance(0);
        assert_eq!(get(&mut rtc, 0x00), 0x21);
        // 23:59:59 on Dec 31 rolls everything over.
        let mut rtc = rtc_at(946_684_799); // 1999-12-31 23:59:59, a Friday
        assert_eq!(
            clock(&mut rtc),
            [0x19, 0x99, 0x12, 0x31, 0x06, 0x23, 0x59, 0x59]
        );
        rtc.advance(SEC);
        assert_eq!(
            clock(&mut rtc),
            [0x20, 0x00, 0x01, 0x01, 0x07, 0x00, 0x00, 0x00]
        );
    }

    #[test]
    fn update_in_progress_around_the_second_boundary() {
        let mut rtc = rtc_at(T0);
        let uip = |rtc: &mut Rtc| get(rtc, 0x0a) & 0x80 != 0;
        // The first 1984 µs of a second.
        assert!(uip(&mut rtc));
        rtc.advance(1_983_999);
        assert!(uip(&mut rtc));
        rtc.advance(1_984_000);
        assert!(!uip(&mut rtc));
        rtc.advance(SEC / 2);
        assert!(!uip(&mut rtc));
        // The last 244 µs before the next one.
        rtc.advance(SEC - 244_001);
        assert!(!uip(&mut rtc));
        rtc.advance(SEC - 244_000);
        assert!(uip(&mut rtc));
        // UIP is read-only.
        set(&mut rtc, 0x0a, 0x26);
        rtc.advance(SEC + SEC / 2);
        assert_eq!(get(&mut rtc, 0x0a), 0x26);
    }

    #[test]
    fn set_bit_holds_time_for_writing() {
        let mut rtc = rtc_at(T0);
        rtc.advance(SEC / 2);
        set(&mut rtc, 0x0b, 0x82 | 0x10);
        assert_eq!(get(&mut rtc, 0x0b), 0x82, "SET clears UIE");
        // Held: no updates, no UIP.
        rtc.advance(5 * SEC);
        assert_eq!(get(&mut rtc, 0x00), 0x20);
        assert_eq!(get(&mut rtc, 0x0a) & 0x80, 0);
        // Write 1999-02-28 08:30:45, day first while still in November.
        for (index, value) in [(0x07, 0x28), (0x08, 0x02), (0x09, 0x99), (0x32, 0x19)] {
            set(&mut rtc, index, value);
        }
        for (index, value) in [(0x04, 0x08), (0x02, 0x30), (0x00, 0x45)] {
            set(&mut rtc, index, value);
        }
        rtc.advance(7 * SEC);
        assert_eq!(
            clock(&mut rtc),
            [0x19, 0x99, 0x02, 0x28, 0x03, 0x08, 0x30, 0x45]
        );
        // Clearing SET resumes from the written time on the same second
        // boundaries as before.
        set(&mut rtc, 0x0b, 0x02);
        rtc.advance(8 * SEC - 1);
        assert_eq!(get(&mut rtc, 0x00), 0x45);
        rtc.advance(8 * SEC);
        assert_eq!(get(&mut rtc, 0x00), 0x46);
        // Midnight: the date and the (independent) weekday move on.
        rtc.advance((7 + 15 * 3600 + 29 * 60 + 16) * SEC);
        assert_eq!(
            clock(&mut rtc),
            [0x19, 0x99, 0x03, 0x01, 0x04, 0x00, 0x00, 0x01]
        );
    }

    #[test]
    fn writes_while_running_set_the_clock() {
        let mut rtc = rtc_at(T0);
        set(&mut rtc, 0x02, 0x59);
        assert_eq!(get(&mut rtc, 0x02), 0x59);
        rtc.advance(40 * SEC);
        assert_eq!(clock(&mut rtc)[5..], [0x23, 0x00, 0x00]);
        // Invalid BCD and out-of-range values are ignored.
        set(&mut rtc, 0x00, 0x5a);
        set(&mut rtc, 0x02, 0x60);
        set(&mut rtc, 0x08, 0x13);
        assert_eq!(clock(&mut rtc)[2..], [0x11, 0x14, 0x03, 0x23, 0x00, 0x00]);
    }

    #[test]
    fn century_and_weekday() {
        // 2100-03-01 00:00:00, a Monday.
        let mut rtc = rtc_at(4_107_542_400);
        assert_eq!(get(&mut rtc, 0x32), 0x21);
        assert_eq!(get(&mut rtc, 0x09), 0x00);
        assert_eq!(get(&mut rtc, 0x06), 0x02);
        set(&mut rtc, 0x0b, 0x06);
        assert_eq!(get(&mut rtc, 0x32), 21);
        // A guest may set the weekday to anything; it then counts from there.
        set(&mut rtc, 0x06, 7);
        rtc.advance(86_400 * SEC);
        assert_eq!(get(&mut rtc, 0x06), 1);
        assert_eq!(get(&mut rtc, 0x07), 2);
    }

    #[test]
    fn cmos_ram_and_alarms() {
        let mut rtc = Rtc::new();
        assert_eq!(get(&mut rtc, 0x10), 0);
        for index in (0x0e..0x80).filter(|&i| i != 0x32) {
            set(&mut rtc, index, index ^ 0x5a);
        }
        for index in [0x01, 0x03, 0x05] {
            set(&mut rtc, index, index + 0xc0);
        }
        for index in (0x0e..0x80).filter(|&i| i != 0x32) {
            assert_eq!(get(&mut rtc, index), index ^ 0x5a);
        }
        assert_eq!(get(&mut rtc, 0x03), 0xc3);
        // Bit 7 of the index is the NMI mask, not part of the index.
        rtc.write(0x70, 0x80 | 0x20);
        assert_eq!(rtc.read(0x71), 0x20 ^ 0x5a);
        // Registers C and D are read-only; the time is untouched.
        set(&mut rtc, 0x0c, 0xff);
        set(&mut rtc, 0x0d, 0x00);
        assert_eq!(get(&mut rtc, 0x0c), 0);
        assert_eq!(get(&mut rtc, 0x0d), 0x80);
        assert_eq!(get(&mut rtc, 0x00), 0x00);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::state::through_bytes;

    const SEC: u64 = 1_000_000_000;

    /// Mid-operation: the clock adjusted by the guest, then held with SET
    /// while the guest writes it, binary mode, RAM written, an index set.
    fn busy() -> Rtc {
        let mut rtc = Rtc::new();
        rtc.set_wall_clock(1_700_000_000 * SEC);
        rtc.advance(5 * SEC + 123);
        for (index, value) in [
            (0x0b, 0x06),
            (0x04, 17),
            (0x0b, 0x86),
            (0x00, 42),
            (0x20, 0x5a),
        ] {
            rtc.write(0x70, index);
            rtc.write(0x71, value);
        }
        rtc.write(0x70, 0x02);
        assert!(rtc.held.is_some() && rtc.offset_secs != 0);
        rtc
    }

    #[test]
    fn a_restored_rtc_goes_on_as_the_original() {
        let mut original = busy();
        let state = through_bytes(&original.state());
        let mut restored = Rtc::from_state(&state).unwrap();
        assert_eq!(restored, original);
        for step in 0..30u64 {
            let now = (5 + step) * SEC + step * 77_777_777;
            for rtc in [&mut original, &mut restored] {
                rtc.advance(now);
                if step == 10 {
                    rtc.write(0x70, 0x0b);
                    rtc.write(0x71, 0x06); // SET off: the clock runs on
                }
            }
            for index in [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x20, 0x32] {
                original.write(0x70, index);
                restored.write(0x70, index);
                assert_eq!(
                    original.read(0x71),
                    restored.read(0x71),
                    "register {index:#x}"
                );
            }
        }
        assert_eq!(original.state(), restored.state());
    }

    #[test]
    fn an_rtc_state_no_guest_reaches_is_refused() {
        let good = busy().state();
        let mut weekday = good.clone();
        weekday.weekday_offset = 7;
        let mut offset = good.clone();
        offset.offset_secs = i64::MAX;
        let mut held = good.clone();
        if let Some(time) = &mut held.held {
            time.month = 13;
        }
        let mut index = good.clone();
        index.index = 0x80;
        for (state, what) in [
            (weekday, "adjustment"),
            (offset, "adjustment"),
            (held, "no date"),
            (index, "index"),
        ] {
            let error = Rtc::from_state(&state).unwrap_err();
            assert!(error.to_string().contains(what), "{error}");
        }
    }
}
