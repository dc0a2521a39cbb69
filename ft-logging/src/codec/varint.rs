//! Unsigned LEB128 varints, and zigzag for signed deltas.

/// The longest LEB128 encoding of a u64.
const MAX_LEN: usize = 10;

/// Why the bytes at hand do not hold a varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VarintError {
    /// The input ends inside the varint.
    Incomplete,
    /// The value does not fit in a u64.
    Overflow,
    /// The encoding has redundant trailing zero groups: only the shortest
    /// one is accepted, so every value has exactly one encoding.
    Overlong,
}

pub(super) fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes the varint at the start of `input`: its value and its length.
pub(super) fn get(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(MAX_LEN) {
        let group = u64::from(byte & 0x7f);
        // The tenth byte carries bit 63 alone.
        if i == MAX_LEN - 1 && group > 1 {
            return Err(VarintError::Overflow);
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(VarintError::Overlong);
            }
            return Ok((value, i + 1));
        }
    }
    if input.len() >= MAX_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Incomplete)
    }
}

/// Maps signed to unsigned so that small magnitudes stay short:
/// 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
pub(super) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(super) fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, value);
        out
    }

    #[test]
    fn round_trips_at_every_length_boundary() {
        for shift in 0..64 {
            for value in [(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1] {
                let bytes = encoded(value);
                assert_eq!(get(&bytes), Ok((value, bytes.len())));
            }
        }
        assert_eq!(encoded(u64::MAX).len(), MAX_LEN);
        assert_eq!(get(&encoded(u64::MAX)), Ok((u64::MAX, MAX_LEN)));
    }

    #[test]
    fn refuses_incomplete_overflowing_and_overlong_input() {
        assert_eq!(get(&[]), Err(VarintError::Incomplete));
        assert_eq!(get(&[0x80, 0x80]), Err(VarintError::Incomplete));
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(get(&too_big), Err(VarintError::Overflow));
        assert_eq!(get(&[0xff; 11]), Err(VarintError::Overflow));
        assert_eq!(get(&[0x81, 0x00]), Err(VarintError::Overlong));
        assert_eq!(get(&[0x00]), Ok((0, 1)));
    }

    #[test]
    fn zigzag_keeps_small_magnitudes_small() {
        for (signed, unsigned) in [(0, 0), (-1, 1), (1, 2), (-2, 3), (i64::MAX, u64::MAX - 1)] {
            assert_eq!(zigzag(signed), unsigned);
            assert_eq!(unzigzag(unsigned), signed);
        }
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
    }
}
