//! Integers as text and as varints, by hand: `core::fmt` is off limits.

use alloc::vec::Vec;

/// The longest decimal number Redis's `string2ll` accepts: it refuses
/// strings of `LONG_STR_SIZE` (21) bytes or more.
pub(crate) const MAX_I64_LEN: usize = 20;

/// Parses a decimal `i64` exactly as Redis's `string2ll` does: an optional
/// `-`, no `+`, no spaces, no leading zeros (so not `-0` either), no
/// overflow.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > MAX_I64_LEN {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut magnitude = u64::from(first - b'0');
    for &digit in rest {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Appends `value` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; MAX_I64_LEN];
    let mut len = 0;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
        len += 1;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(MAX_I64_LEN - len..).unwrap_or_default());
}

/// Appends `value` in decimal, with a `-` when negative.
pub(crate) fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads an unsigned LEB128 varint at the start of `input`: its value and
/// its length in bytes. `None` when it is cut short or exceeds `u64`.
pub(crate) fn read_varint(input: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * index as u32;
        // The tenth byte may only carry u64's top bit.
        if index == 9 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use std::format;

    fn decimal(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        push_i64(&mut out, value);
        out
    }

    #[test]
    fn prints_like_display() {
        for value in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            12345,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ] {
            assert_eq!(decimal(value), format!("{value}").into_bytes());
        }
        let mut out = vec![b'x'];
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"x18446744073709551615");
    }

    #[test]
    fn parses_like_string2ll() {
        for (text, expected) in [
            (&b"0"[..], Some(0)),
            (b"1", Some(1)),
            (b"-1", Some(-1)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"-9223372036854775809", None),
            (b"99999999999999999999", None),
            (b"184467440737095516150", None),
            (b"", None),
            (b"-", None),
            (b"-0", None),
            (b"00", None),
            (b"01", None),
            (b"+1", None),
            (b" 1", None),
            (b"1 ", None),
            (b"1a", None),
            (b"1.0", None),
            (b"\x001", None),
        ] {
            assert_eq!(parse_i64(text), expected, "{:?}", text);
        }
        for value in [0, 7, -7, 1000, -1000, i64::MAX, i64::MIN] {
            assert_eq!(parse_i64(&decimal(value)), Some(value));
        }
    }

    #[test]
    fn varint_round_trip() {
        for value in [0, 1, 127, 128, 300, 16383, 16384, u32::MAX.into(), u64::MAX] {
            let mut out = Vec::new();
            push_varint(&mut out, value);
            assert_eq!(read_varint(&out), Some((value, out.len())));
            assert_eq!(read_varint(out.get(..out.len() - 1).unwrap()), None);
        }
        assert_eq!(read_varint(&[0x80; 11]), None);
        // An eleventh byte or bits past u64 are refused.
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }
}
