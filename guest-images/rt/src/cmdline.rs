//! `key=value` parameters on the kernel command line.

/// The value of parameter `key` in `cmdline`: the part after `key=` of the
/// last space-separated word that starts with it, as on Linux.
pub fn param<'a>(cmdline: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    cmdline
        .split(|&byte| byte == b' ')
        .filter_map(|word| word.strip_prefix(key)?.strip_prefix(b"="))
        .next_back()
}

/// `digits` as a decimal number, if it is one that fits a `u64`.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}
