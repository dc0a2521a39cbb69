//! Sorted-set scores: IEEE 754 doubles, parsed, ordered and printed with
//! integer arithmetic only.
//!
//! Guests cannot compute with floats: the precompiled `core` and
//! `compiler_builtins` do float work with SSE, which KVM's emulator here
//! cannot run, and our soft-float code cannot call them (docs/DESIGN.md §1). A
//! score is therefore kept as its bits. Text becomes bits the way `strtod`
//! rounds (to nearest, ties to even), by the exact big-decimal method of
//! Go's `strconv` (its `decimal` type); bits become the shortest text that
//! reads back to the same bits, printed as Redis 7.2 prints doubles
//! (`d2string`: integers as integers, `fpconv_dtoa`'s layout otherwise).

use alloc::vec::Vec;
use core::cmp::Ordering;

use crate::int;

const MANT_BITS: u32 = 52;
const EXP_BITS: u32 = 11;
const BIAS: i32 = -1023;
const SIGN: u64 = 1 << 63;
const INFINITY: u64 = 0x7ff0_0000_0000_0000;

/// A score: a double that is never NaN.
#[derive(Clone, Copy)]
pub(crate) struct Score(u64);

impl Score {
    #[cfg(test)]
    pub(crate) const ZERO: Score = Score(0);

    /// Parses a score as Redis's `string2d` does: `strtod` over the whole
    /// text (sign, digits with an optional point and exponent, or
    /// `inf`/`infinity`), refusing leading blanks, NaN, and finite text
    /// that overflows to infinity or underflows to zero. Hexadecimal
    /// floats, which `strtod` also reads, are refused.
    pub(crate) fn parse(text: &[u8]) -> Option<Score> {
        let (negative, body) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, text),
        };
        let sign = if negative { SIGN } else { 0 };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(Score(INFINITY | sign));
        }
        if let Some(value) = small_integer(body) {
            return Some(Score(integer_bits(value) | sign));
        }
        let mut decimal = Decimal::parse(body)?;
        let nonzero = decimal.nd > 0;
        let bits = decimal.float_bits()?;
        (!nonzero || bits != 0).then_some(Score(bits | sign))
    }

    #[cfg(test)]
    pub(crate) fn from_bits(bits: u64) -> Option<Score> {
        let nan = bits & !SIGN > INFINITY;
        (!nan).then_some(Score(bits))
    }

    pub(crate) fn to_bits(self) -> u64 {
        self.0
    }

    /// A key whose unsigned order is the scores' numeric order, with
    /// -0 equal to +0.
    fn key(self) -> u64 {
        let bits = if self.0 == SIGN { 0 } else { self.0 };
        if bits & SIGN != 0 { !bits } else { bits | SIGN }
    }

    /// Appends the score as Redis 7.2's `d2string` prints it.
    pub(crate) fn push_text(self, out: &mut Vec<u8>) {
        let negative = self.0 & SIGN != 0;
        let magnitude = self.0 & !SIGN;
        if magnitude == INFINITY {
            out.extend_from_slice(if negative { b"-inf" } else { b"inf" });
            return;
        }
        if magnitude == 0 {
            out.extend_from_slice(if negative { b"-0" } else { b"0" });
            return;
        }
        if let Some(integer) = integral(magnitude).filter(|&value| value <= (i64::MAX / 2) as u64) {
            if negative {
                out.push(b'-');
            }
            int::push_u64(out, integer);
            return;
        }
        if negative {
            out.push(b'-');
        }
        let decimal = Decimal::shortest(magnitude);
        emit_digits(&decimal, out);
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Plain decimal digits without a sign, point or exponent, of a value
/// exactly representable (below 2^53): the common case, with no big
/// decimal.
fn small_integer(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 15 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0u64, |value, &digit| value * 10 + u64::from(digit - b'0')),
    )
}

/// The bits of a positive integer below 2^53.
fn integer_bits(value: u64) -> u64 {
    if value == 0 {
        return 0;
    }
    let top = 63 - value.leading_zeros();
    let mantissa = (value << (MANT_BITS - top)) & ((1 << MANT_BITS) - 1);
    let exponent = u64::from(top) + (-BIAS) as u64;
    exponent << MANT_BITS | mantissa
}

/// The value of a positive finite double's bits when it is an integer
/// that fits in a `u64`.
fn integral(bits: u64) -> Option<u64> {
    let exponent = (bits >> MANT_BITS) as i32 + BIAS;
    let mantissa = bits & ((1 << MANT_BITS) - 1) | 1 << MANT_BITS;
    if !(0..=63).contains(&exponent) {
        return None;
    }
    let exponent = exponent as u32;
    if exponent >= MANT_BITS {
        return Some(mantissa << (exponent - MANT_BITS));
    }
    let fraction = MANT_BITS - exponent;
    (mantissa & ((1 << fraction) - 1) == 0).then_some(mantissa >> fraction)
}

/// `fpconv_dtoa`'s layout of digits `0.d1d2...dn × 10^dp`: plain when
/// short enough, else scientific with a signed exponent of at least one
/// digit (`1e+21`, `1.5e-07` is `1.5e-7`).
fn emit_digits(decimal: &Decimal, out: &mut Vec<u8>) {
    let digits = decimal.digits();
    let count = digits.len() as i32;
    // The value is digits × 10^k.
    let k = decimal.dp - count;
    let exp = (k + count - 1).abs();
    if k >= 0 && exp < count + 7 {
        out.extend_from_slice(digits);
        out.extend(core::iter::repeat_n(b'0', k as usize));
        return;
    }
    if k < 0 && (k > -7 || exp < 4) {
        let offset = count + k;
        if offset <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(core::iter::repeat_n(b'0', (-offset) as usize));
            out.extend_from_slice(digits);
        } else {
            let (whole, fraction) = digits.split_at(offset as usize);
            out.extend_from_slice(whole);
            out.push(b'.');
            out.extend_from_slice(fraction);
        }
        return;
    }
    let (first, rest) = digits.split_at(1);
    out.extend_from_slice(first);
    if !rest.is_empty() {
        out.push(b'.');
        out.extend_from_slice(rest);
    }
    out.push(b'e');
    out.push(if k + count - 1 < 0 { b'-' } else { b'+' });
    int::push_u64(out, exp as u64);
}

/// Digits the big decimal keeps; more are only needed to break exact
/// ties, which `trunc` remembers.
const MAX_DIGITS: usize = 800;
/// The largest shift at once, so that `n << shift` fits in a `u64`.
const MAX_SHIFT: u32 = 60;
/// Binary exponents that bring a decimal exponent of the index below 1.
const POWERS: [u32; 9] = [1, 3, 6, 9, 13, 16, 19, 23, 26];

/// An arbitrary-precision decimal `0.d1d2...dn × 10^dp` (ASCII digits).
struct Decimal {
    d: [u8; MAX_DIGITS],
    nd: usize,
    dp: i32,
    /// Nonzero digits were dropped past `MAX_DIGITS`.
    trunc: bool,
}

impl Decimal {
    fn zero() -> Self {
        Self {
            d: [0; MAX_DIGITS],
            nd: 0,
            dp: 0,
            trunc: false,
        }
    }

    fn digits(&self) -> &[u8] {
        self.d.get(..self.nd).unwrap_or_default()
    }

    /// Digits, an optional point, an optional exponent; nothing else.
    fn parse(text: &[u8]) -> Option<Self> {
        let mut decimal = Self::zero();
        let mut seen_point = false;
        let mut seen_digits = false;
        let mut index = 0;
        while let Some(&byte) = text.get(index) {
            match byte {
                b'.' if seen_point => return None,
                b'.' => {
                    seen_point = true;
                    decimal.dp = decimal.nd as i32;
                }
                b'0'..=b'9' => {
                    seen_digits = true;
                    if byte == b'0' && decimal.nd == 0 {
                        // A leading zero.
                        decimal.dp -= 1;
                    } else if decimal.nd < MAX_DIGITS {
                        decimal.d[decimal.nd] = byte;
                        decimal.nd += 1;
                    } else if byte != b'0' {
                        decimal.trunc = true;
                    }
                }
                _ => break,
            }
            index += 1;
        }
        if !seen_digits {
            return None;
        }
        if !seen_point {
            decimal.dp = decimal.nd as i32;
        }
        if let Some(&(b'e' | b'E')) = text.get(index) {
            index += 1;
            let negative = match text.get(index) {
                Some(b'-') => {
                    index += 1;
                    true
                }
                Some(b'+') => {
                    index += 1;
                    false
                }
                _ => false,
            };
            let digits = text.get(index..).unwrap_or_default();
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Past this the value is zero or infinite anyway.
            let exponent = digits.iter().fold(0i32, |exponent, &digit| {
                (exponent * 10 + i32::from(digit - b'0')).min(100_000)
            });
            decimal.dp += if negative { -exponent } else { exponent };
            index = text.len();
        }
        (index == text.len()).then_some(decimal)
    }

    fn assign(value: u64) -> Self {
        let mut decimal = Self::zero();
        let mut buffer = Vec::new();
        int::push_u64(&mut buffer, value);
        decimal.nd = buffer.len();
        decimal.d[..buffer.len()].copy_from_slice(&buffer);
        decimal.dp = decimal.nd as i32;
        decimal.trim();
        decimal
    }

    fn trim(&mut self) {
        while self.nd > 0 && self.d[self.nd - 1] == b'0' {
            self.nd -= 1;
        }
        if self.nd == 0 {
            self.dp = 0;
        }
    }

    /// Multiplies by 2^k (divides for a negative k).
    fn shift(&mut self, mut k: i32) {
        if self.nd == 0 {
            return;
        }
        while k > 0 {
            let step = (k as u32).min(MAX_SHIFT);
            self.left_shift(step);
            k -= step as i32;
        }
        while k < 0 {
            let step = ((-k) as u32).min(MAX_SHIFT);
            self.right_shift(step);
            k += step as i32;
        }
    }

    fn right_shift(&mut self, k: u32) {
        let mut read = 0;
        let mut write = 0;
        let mut n: u64 = 0;
        // Take enough leading digits for the first output digit.
        while n >> k == 0 {
            if read >= self.nd {
                if n == 0 {
                    self.nd = 0;
                    return;
                }
                while n >> k == 0 {
                    n *= 10;
                    read += 1;
                }
                break;
            }
            n = n * 10 + u64::from(self.d[read] - b'0');
            read += 1;
        }
        self.dp -= read as i32 - 1;
        let mask = (1u64 << k) - 1;
        while read < self.nd {
            let digit = n >> k;
            n &= mask;
            self.d[write] = digit as u8 + b'0';
            write += 1;
            n = n * 10 + u64::from(self.d[read] - b'0');
            read += 1;
        }
        while n > 0 {
            let digit = n >> k;
            n &= mask;
            if write < MAX_DIGITS {
                self.d[write] = digit as u8 + b'0';
                write += 1;
            } else if digit > 0 {
                self.trunc = true;
            }
            n *= 10;
        }
        self.nd = write;
        self.trim();
    }

    fn left_shift(&mut self, k: u32) {
        // Written from the last digit back into a scratch buffer with room
        // for the new leading digits (at most 19 for a 60-bit shift).
        let mut scratch = [0u8; MAX_DIGITS + 20];
        let mut write = self.nd + 20;
        let end = write;
        let mut n: u64 = 0;
        for read in (0..self.nd).rev() {
            n += u64::from(self.d[read] - b'0') << k;
            write -= 1;
            scratch[write] = (n % 10) as u8 + b'0';
            n /= 10;
        }
        while n > 0 {
            write -= 1;
            scratch[write] = (n % 10) as u8 + b'0';
            n /= 10;
        }
        let produced = end - write;
        let added = produced - self.nd;
        let kept = produced.min(MAX_DIGITS);
        if scratch[write + kept..end]
            .iter()
            .any(|&digit| digit != b'0')
        {
            self.trunc = true;
        }
        self.d[..kept].copy_from_slice(&scratch[write..write + kept]);
        self.nd = kept;
        self.dp += added as i32;
        self.trim();
    }

    /// Whether rounding to `nd` digits rounds up (ties to even).
    fn should_round_up(&self, nd: usize) -> bool {
        if nd >= self.nd {
            return false;
        }
        if self.d[nd] == b'5' && nd + 1 == self.nd {
            if self.trunc {
                return true;
            }
            return nd > 0 && (self.d[nd - 1] - b'0') % 2 == 1;
        }
        self.d[nd] >= b'5'
    }

    fn rounded_integer(&self) -> u64 {
        if self.dp > 20 {
            return u64::MAX;
        }
        let dp = self.dp.max(0) as usize;
        let mut n: u64 = 0;
        for index in 0..dp {
            n = n
                .wrapping_mul(10)
                .wrapping_add(u64::from(self.digit_or_zero(index) - b'0'));
        }
        if self.dp >= 0 && self.should_round_up(dp) {
            n += 1;
        }
        n
    }

    fn round_down(&mut self, nd: usize) {
        if nd < self.nd {
            self.nd = nd;
            self.trim();
        }
    }

    fn round_up(&mut self, nd: usize) {
        if nd >= self.nd {
            return;
        }
        for index in (0..nd).rev() {
            if self.d[index] < b'9' {
                self.d[index] += 1;
                self.nd = index + 1;
                return;
            }
        }
        self.d[0] = b'1';
        self.nd = 1;
        self.dp += 1;
    }

    fn round(&mut self, nd: usize) {
        if self.should_round_up(nd) {
            self.round_up(nd);
        } else {
            self.round_down(nd);
        }
    }

    /// The nearest double's bits (positive), or `None` past the largest.
    fn float_bits(&mut self) -> Option<u64> {
        if self.nd == 0 || self.dp < -330 {
            return Some(0);
        }
        if self.dp > 310 {
            return None;
        }
        let mut exp: i32 = 0;
        while self.dp > 0 {
            let n = POWERS.get(self.dp as usize).copied().unwrap_or(27) as i32;
            self.shift(-n);
            exp += n;
        }
        while self.dp < 0 || self.dp == 0 && self.d[0] < b'5' {
            let n = POWERS.get((-self.dp) as usize).copied().unwrap_or(27) as i32;
            self.shift(n);
            exp -= n;
        }
        // The range is [0.5, 1); doubles' is [1, 2).
        exp -= 1;
        if exp < BIAS + 1 {
            let n = BIAS + 1 - exp;
            self.shift(-n);
            exp += n;
        }
        if exp - BIAS >= (1 << EXP_BITS) - 1 {
            return None;
        }
        self.shift(1 + MANT_BITS as i32);
        let mut mant = self.rounded_integer();
        if mant == 2 << MANT_BITS {
            mant >>= 1;
            exp += 1;
            if exp - BIAS >= (1 << EXP_BITS) - 1 {
                return None;
            }
        }
        if mant & (1 << MANT_BITS) == 0 {
            // Subnormal.
            exp = BIAS;
        }
        let field = ((exp - BIAS) as u64) & ((1 << EXP_BITS) - 1);
        Some(mant & ((1 << MANT_BITS) - 1) | field << MANT_BITS)
    }

    /// The shortest decimal that reads back as the positive finite
    /// nonzero double `bits` (Go's `roundShortest`).
    fn shortest(bits: u64) -> Self {
        let mut exp = (bits >> MANT_BITS) as i32;
        let mut mant = bits & ((1 << MANT_BITS) - 1);
        if exp == 0 {
            exp += 1;
        } else {
            mant |= 1 << MANT_BITS;
        }
        exp += BIAS;
        let mut decimal = Self::assign(mant);
        decimal.shift(exp - MANT_BITS as i32);
        let min_exp = BIAS + 1;
        if exp > min_exp && 332 * (decimal.dp - decimal.nd as i32) >= 100 * (exp - MANT_BITS as i32)
        {
            return decimal;
        }
        let mut upper = Self::assign(mant * 2 + 1);
        upper.shift(exp - MANT_BITS as i32 - 1);
        let (mant_low, exp_low) = if mant > 1 << MANT_BITS || exp == min_exp {
            (mant - 1, exp)
        } else {
            (mant * 2 - 1, exp - 1)
        };
        let mut lower = Self::assign(mant_low * 2 + 1);
        lower.shift(exp_low - MANT_BITS as i32 - 1);
        let inclusive = mant.is_multiple_of(2);
        let mut upper_delta = 0u8;
        let mut ui: i32 = 0;
        loop {
            let mi = ui - upper.dp + decimal.dp;
            if mi >= decimal.nd as i32 {
                return decimal;
            }
            let li = ui - upper.dp + lower.dp;
            let l = if li >= 0 {
                lower.digit_or_zero(li as usize)
            } else {
                b'0'
            };
            let m = if mi >= 0 {
                decimal.d[mi as usize]
            } else {
                b'0'
            };
            let u = upper.digit_or_zero(ui as usize);
            let ok_down = l != m || inclusive && li + 1 == lower.nd as i32;
            if upper_delta == 0 && m + 1 < u {
                upper_delta = 2;
            } else if upper_delta == 0 && m != u {
                upper_delta = 1;
            } else if upper_delta == 1 && (m != b'9' || u != b'0') {
                upper_delta = 2;
            }
            let ok_up =
                upper_delta > 0 && (inclusive || upper_delta > 1 || ui + 1 < upper.nd as i32);
            let nd = (mi + 1) as usize;
            match (ok_down, ok_up) {
                (true, true) => {
                    decimal.round(nd);
                    return decimal;
                }
                (true, false) => {
                    decimal.round_down(nd);
                    return decimal;
                }
                (false, true) => {
                    decimal.round_up(nd);
                    return decimal;
                }
                (false, false) => ui += 1,
            }
        }
    }

    fn digit_or_zero(&self, index: usize) -> u8 {
        if index < self.nd { self.d[index] } else { b'0' }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::XorShift;
    use std::string::String;
    use std::{format, vec};

    fn text(score: Score) -> String {
        let mut out = Vec::new();
        score.push_text(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn parse(text: &str) -> Option<f64> {
        Score::parse(text.as_bytes()).map(|score| f64::from_bits(score.to_bits()))
    }

    #[test]
    fn parses_like_strtod() {
        for (input, expected) in [
            ("0", Some(0.0)),
            ("1", Some(1.0)),
            ("-1", Some(-1.0)),
            ("+2.5", Some(2.5)),
            ("2.5", Some(2.5)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("1e3", Some(1000.0)),
            ("1E-3", Some(0.001)),
            ("0.1", Some(0.1)),
            ("-0", Some(-0.0)),
            (
                "123456789012345678901234567890",
                Some(1.2345678901234568e29),
            ),
            ("1.7976931348623157e308", Some(f64::MAX)),
            ("4.9406564584124654e-324", Some(5e-324)),
            ("inf", Some(f64::INFINITY)),
            ("-INF", Some(f64::NEG_INFINITY)),
            ("+Infinity", Some(f64::INFINITY)),
            ("1e309", None),
            ("1e-400", None),
            ("nan", None),
            ("", None),
            (" 1", None),
            ("1 ", None),
            ("1e", None),
            ("e1", None),
            (".", None),
            ("1.2.3", None),
            ("0x10", None),
            ("--1", None),
            ("1_0", None),
        ] {
            let got = parse(input);
            assert_eq!(
                got.map(f64::to_bits),
                expected.map(f64::to_bits),
                "{input:?}"
            );
        }
    }

    #[test]
    fn parsing_random_decimals_agrees_with_std() {
        let mut rng = XorShift(0x5eed_f10a_7000_0001);
        for _ in 0..20_000 {
            let digits: String = (0..1 + rng.below(25))
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            let point = rng.below(digits.len() + 1);
            let exponent = rng.below(700) as i64 - 350;
            let input = format!("{}.{}e{exponent}", &digits[..point], &digits[point..]);
            let expected: f64 = input.parse().unwrap();
            let got = parse(&input);
            if expected.is_infinite() || (expected == 0.0 && digits.bytes().any(|d| d != b'0')) {
                assert_eq!(got, None, "{input}");
            } else {
                assert_eq!(got.map(f64::to_bits), Some(expected.to_bits()), "{input}");
            }
        }
    }

    #[test]
    fn random_doubles_print_shortest_and_read_back() {
        let mut rng = XorShift(0x5eed_f10a_7000_0002);
        for round in 0..20_000 {
            let bits = if round % 2 == 0 {
                rng.next()
            } else {
                // Short decimals, as clients send.
                let value = rng.below(100_000) as f64 / [1.0, 10.0, 100.0, 1000.0][rng.below(4)];
                value.to_bits()
            };
            let Some(score) = Score::from_bits(bits) else {
                continue;
            };
            let printed = text(score);
            let value = f64::from_bits(bits);
            assert_eq!(
                printed.parse::<f64>().unwrap().to_bits(),
                bits,
                "{printed} for {value:e}"
            );
            assert_eq!(Score::parse(printed.as_bytes()).unwrap().to_bits(), bits);
            // As short as Rust's shortest representation.
            let digits = |text: &str| {
                let mantissa = text.split(['e', 'E']).next().unwrap();
                mantissa
                    .trim_start_matches('-')
                    .replace('.', "")
                    .trim_matches('0')
                    .len()
            };
            if value.abs() > (i64::MAX / 2) as f64 || value.fract() != 0.0 {
                assert_eq!(digits(&printed), digits(&format!("{value:e}")), "{printed}");
            }
        }
    }

    #[test]
    fn prints_like_redis() {
        for (value, expected) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (1.5e-7, "1.5e-7"),
            (1e-6, "0.000001"),
            (123.456, "123.456"),
            (1e21, "1e+21"),
            (1e18, "1000000000000000000"),
            (4611686018427386880.0, "4611686018427386880"),
            (4611686018427387904.0, "4611686018427388000"),
            (9223372036854775808.0, "9223372036854776000"),
            (1.5e300, "1.5e+300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (5e-324, "5e-324"),
            (0.30000000000000004, "0.30000000000000004"),
        ] {
            assert_eq!(
                text(Score::from_bits(f64::to_bits(value)).unwrap()),
                expected
            );
        }
    }

    #[test]
    fn orders_numerically() {
        let mut values = vec![
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -0.0,
            5e-324,
            0.1,
            1.0,
            1e300,
            f64::INFINITY,
        ];
        values.reverse();
        let mut scores: Vec<Score> = values
            .iter()
            .map(|value| Score::from_bits(value.to_bits()).unwrap())
            .collect();
        scores.sort();
        let sorted: Vec<f64> = scores.iter().map(|s| f64::from_bits(s.to_bits())).collect();
        values.reverse();
        assert_eq!(sorted, values);
        assert!(Score::parse(b"-0").unwrap() == Score::ZERO);
        assert!(Score::from_bits(f64::NAN.to_bits()).is_none());
    }
}
