//! The running digest of an output stream (the console): what a replay or
//! a backup compares with the recorded run's.

use std::hash::Hasher;

use twox_hash::XxHash64;

use crate::StreamDigest;

/// The running digest of an output stream: independent of how the bytes
/// were split into writes.
#[derive(Clone, Default)]
pub struct StreamHasher {
    bytes: u64,
    hasher: XxHash64,
}

impl std::fmt::Debug for StreamHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.digest().fmt(f)
    }
}

impl StreamHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        self.hasher.write(bytes);
    }

    pub fn digest(&self) -> StreamDigest {
        StreamDigest {
            bytes: self.bytes,
            digest: self.hasher.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_does_not_depend_on_how_writes_were_split() {
        let mut whole = StreamHasher::default();
        whole.update(b"hello, world");
        let mut parts = StreamHasher::default();
        for part in [&b"hel"[..], b"", b"lo, w", b"orld"] {
            parts.update(part);
        }
        assert_eq!(whole.digest(), parts.digest());
        assert_eq!(whole.digest().bytes, 12);
        let mut other = StreamHasher::default();
        other.update(b"hello, World");
        assert_ne!(whole.digest(), other.digest());
    }
}
