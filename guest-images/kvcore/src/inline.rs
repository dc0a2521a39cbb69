//! Splitting an inline request line into arguments, as Redis's
//! `sdssplitargs` does: words separated by blanks, `"double quotes"` with
//! C-like escapes (`\n`, `\r`, `\t`, `\b`, `\a`, `\xHH`, `\<any>`), and
//! `'single quotes'` where only `\'` is an escape. A closing quote must be
//! followed by a blank or the end of the line; an opening quote may follow
//! a word (`a"b c"` is `ab c`).

use alloc::vec::Vec;

/// The arguments of `line` (without its line ending), or `None` for
/// unbalanced quotes.
///
/// Like the C original, a NUL byte ends the line.
pub(crate) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // The byte at `index`, or the C string's terminating NUL past the end.
    let at = |index: usize| line.get(index).copied().unwrap_or(0);
    let mut p = 0;
    let mut args = Vec::new();
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        let mut done = false;
        while !done {
            let byte = at(p);
            if in_double {
                if byte == b'\\' && at(p + 1) == b'x' {
                    if let (Some(high), Some(low)) = (hex(at(p + 2)), hex(at(p + 3))) {
                        current.push(high << 4 | low);
                        p += 3;
                    } else {
                        // Not a hex escape: `\x` is just `x`.
                        p += 1;
                        current.push(b'x');
                    }
                } else if byte == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if byte == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if byte == 0 {
                    return None;
                } else {
                    current.push(byte);
                }
            } else if in_single {
                if byte == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if byte == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if byte == 0 {
                    return None;
                } else {
                    current.push(byte);
                }
            } else {
                match byte {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(byte),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(current);
    }
}

/// C's `isspace` in the C locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
        split_args(line)
    }

    fn words(words: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
        Some(words.iter().map(|word| word.to_vec()).collect())
    }

    #[test]
    fn splits_on_blanks() {
        assert_eq!(split(b""), words(&[]));
        assert_eq!(split(b"  \t "), words(&[]));
        assert_eq!(split(b"SET a 1"), words(&[b"SET", b"a", b"1"]));
        assert_eq!(split(b"  SET\ta   1  "), words(&[b"SET", b"a", b"1"]));
        assert_eq!(split(b"a\rb"), words(&[b"a", b"b"]));
        // \v and \f are skipped between words but do not end one.
        assert_eq!(split(b"\x0ba\x0cb"), words(&[b"a\x0cb"]));
    }

    #[test]
    fn double_quotes_and_escapes() {
        assert_eq!(split(br#"SET "a b" c"#), words(&[b"SET", b"a b", b"c"]));
        assert_eq!(split(br#""""#), words(&[b""]));
        assert_eq!(
            split(br#""\n\r\t\b\a\"\\\q""#),
            words(&[b"\n\r\t\x08\x07\"\\q"])
        );
        assert_eq!(split(br#""\x41\x4a\x6b\xzz\x4""#), words(&[b"AJkxzzx4"]));
        assert_eq!(split(br#"a"b c"d"#), None);
        assert_eq!(split(br#"a"b c" d"#), words(&[b"ab c", b"d"]));
        assert_eq!(split(b"\"a\"\tb"), words(&[b"a", b"b"]));
    }

    #[test]
    fn single_quotes() {
        assert_eq!(
            split(br"'a b' 'it\'s' '\n'"),
            words(&[b"a b", b"it's", b"\\n"])
        );
        assert_eq!(split(b"''"), words(&[b""]));
    }

    #[test]
    fn unbalanced_quotes() {
        for line in [
            &br#"ECHO "a"#[..],
            br"ECHO 'a",
            br#"ECHO "a"x"#,
            br"ECHO 'a'x",
            br#"ECHO "a\""#,
            br"ECHO 'a\'",
            br#"""#,
            br#"ECHO "a\"#,
        ] {
            assert_eq!(split(line), None);
        }
    }

    #[test]
    fn nul_ends_the_line() {
        assert_eq!(split(b"a b\0c d"), words(&[b"a", b"b"]));
        assert_eq!(split(b"\"a\0\""), None);
        assert_eq!(split(&[0, b'a']), Some(vec![]));
    }
}
