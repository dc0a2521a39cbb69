//! Console output on COM1: text and integers.
//!
//! Hand-written instead of `core::fmt`, whose precompiled code uses SIMD
//! instructions that the host's instruction emulator cannot run.

use crate::serial;

pub fn print(text: &str) {
    print_bytes(text.as_bytes());
}

pub fn print_bytes(bytes: &[u8]) {
    for &byte in bytes {
        serial::write_byte(byte);
    }
}

/// Prints `value` in decimal.
pub fn print_dec(value: u64) {
    print_dec_padded(value, 1);
}

/// Prints `value` in decimal with leading zeros up to `width` digits.
pub fn print_dec_padded(value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let start = digits.len() - decimal(value, &mut digits).len();
    print_bytes(&digits[start.min(digits.len().saturating_sub(width))..]);
}

/// Prints `value` as `0x` and lower-case hex digits, without leading zeros.
pub fn print_hex(value: u64) {
    let mut digits = [0u8; 16];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    print("0x");
    print_bytes(&digits[start..]);
}

/// Ends the current line unless nothing follows the last newline.
pub fn start_line() {
    if serial::last_written() != b'\n' {
        serial::write_byte(b'\n');
    }
}

/// `value` in decimal, written at the end of `digits` (whose other bytes
/// are left alone).
pub fn decimal(value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[start..]
}
