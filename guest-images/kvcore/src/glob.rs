//! Redis's glob-style patterns (`stringmatchlen`), for KEYS, SCAN MATCH
//! and CONFIG GET: `*`, `?`, `[abc]`, `[^a-z]`, and `\` escapes.

/// Deeper `*` recursion than this is refused as no match, as Redis does.
const MAX_NESTING: usize = 1000;

/// Whether `text` matches `pattern`, byte-wise (`nocase`: ASCII case
/// folded).
pub(crate) fn matches(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_at(pattern, text, nocase, &mut skip_longer, 0)
}

fn fold(byte: u8, nocase: bool) -> u8 {
    if nocase {
        byte.to_ascii_lowercase()
    } else {
        byte
    }
}

fn match_at(
    mut pattern: &[u8],
    mut text: &[u8],
    nocase: bool,
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    // The C original reads a NUL past the end of either string.
    let at = |bytes: &[u8], index: usize| bytes.get(index).copied().unwrap_or(0);
    while !pattern.is_empty() && !text.is_empty() {
        match pattern[0] {
            b'*' => {
                while pattern.len() > 1 && pattern[1] == b'*' {
                    pattern = &pattern[1..];
                }
                if pattern.len() == 1 {
                    return true;
                }
                while !text.is_empty() {
                    if match_at(&pattern[1..], text, nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    text = &text[1..];
                }
                // Nothing after this `*` matches anywhere in the rest: a
                // longer match for an earlier `*` cannot help either.
                *skip_longer = true;
                return false;
            }
            b'?' => text = &text[1..],
            b'[' => {
                pattern = &pattern[1..];
                let negate = at(pattern, 0) == b'^';
                if negate {
                    pattern = &pattern[1..];
                }
                let c = fold(text[0], nocase);
                let mut found = false;
                loop {
                    if at(pattern, 0) == b'\\' && pattern.len() >= 2 {
                        pattern = &pattern[1..];
                        found |= pattern[0] == text[0];
                    } else if at(pattern, 0) == b']' {
                        break;
                    } else if pattern.is_empty() {
                        // An unclosed class ends with the pattern; the
                        // step below must not move past its end.
                        break;
                    } else if pattern.len() >= 3 && pattern[1] == b'-' {
                        let (mut start, mut end) =
                            (fold(pattern[0], nocase), fold(pattern[2], nocase));
                        if start > end {
                            core::mem::swap(&mut start, &mut end);
                        }
                        found |= (start..=end).contains(&c);
                        pattern = &pattern[2..];
                    } else {
                        found |= fold(pattern[0], nocase) == c;
                    }
                    pattern = &pattern[1..];
                }
                if found == negate {
                    return false;
                }
                text = &text[1..];
                if pattern.is_empty() {
                    // The unclosed class consumed the whole pattern.
                    return text.is_empty();
                }
            }
            first => {
                let literal = if first == b'\\' && pattern.len() >= 2 {
                    pattern = &pattern[1..];
                    pattern[0]
                } else {
                    first
                };
                if fold(literal, nocase) != fold(text[0], nocase) {
                    return false;
                }
                text = &text[1..];
            }
        }
        pattern = &pattern[1..];
        if text.is_empty() {
            while at(pattern, 0) == b'*' {
                pattern = &pattern[1..];
            }
            break;
        }
    }
    pattern.is_empty() && text.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_redis() {
        for (pattern, text, expected) in [
            (&b"*"[..], &b"anything"[..], true),
            // As in Redis; KEYS and SCAN take `*` as everything.
            (b"*", b"", false),
            (b"", b"", true),
            (b"", b"a", false),
            (b"a", b"", false),
            (b"h?llo", b"hello", true),
            (b"h?llo", b"hllo", false),
            (b"h*llo", b"heeeello", true),
            (b"h*llo", b"hllo", true),
            (b"h[ae]llo", b"hallo", true),
            (b"h[ae]llo", b"hillo", false),
            (b"h[^e]llo", b"hallo", true),
            (b"h[^e]llo", b"hello", false),
            (b"h[a-b]llo", b"hbllo", true),
            (b"h[b-a]llo", b"hbllo", true),
            (b"h[a-b]llo", b"hcllo", false),
            (b"h\\*llo", b"h*llo", true),
            (b"h\\*llo", b"hello", false),
            (b"key:*", b"key:1", true),
            (b"key:*", b"kex:1", false),
            (b"*:*:*", b"a:b:c", true),
            (b"a*b*c", b"abxc", true),
            (b"a*b*c", b"acb", false),
            (b"[a", b"a", true),
            (b"[a", b"b", false),
            (b"ab*", b"ab", true),
            (b"a**", b"a", true),
            (b"\\", b"\\", true),
            (b"[\\]]", b"]", true),
        ] {
            assert_eq!(
                matches(pattern, text, false),
                expected,
                "{:?} ~ {:?}",
                core::str::from_utf8(pattern),
                core::str::from_utf8(text)
            );
        }
        assert!(matches(b"SAVE", b"save", true));
        assert!(!matches(b"SAVE", b"save", false));
        assert!(matches(b"APPEND*", b"appendonly", true));
    }

    #[test]
    fn abusive_patterns_end() {
        let pattern = [b'a', b'*'].repeat(40);
        let text = [b'a'; 80];
        assert!(matches(&pattern, &text, false));
        let mut miss = text.to_vec();
        miss.push(b'b');
        let mut pattern = pattern;
        pattern.push(b'c');
        assert!(!matches(&pattern, &miss, false));
    }
}
