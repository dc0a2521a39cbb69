//! The running digest of an output stream (the console): what a replay or
//! a backup compares with the recorded run's.

use std::hash::Hasher;

use serde::{Deserialize, Deserializer, Serialize};
use twox_hash::XxHash64;

use crate::StreamDigest;

/// The running digest of an output stream: independent of how the bytes
/// were split into writes. It serializes with its hasher's running state
/// (a VM state carries its console digest), and deserializing checks that
/// state, so a damaged one is refused rather than panicking later.
#[derive(Clone, Default, PartialEq, Serialize)]
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
    /// Adds `bytes` to the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        self.hasher.write(bytes);
    }

    /// The digest of the stream so far.
    pub fn digest(&self) -> StreamDigest {
        StreamDigest {
            bytes: self.bytes,
            digest: self.hasher.finish(),
        }
    }
}

/// xxHash64 consumes its input in 32-byte stripes; the rest waits in a
/// buffer.
const STRIPE: usize = 32;

/// The serialized shape of twox-hash's `XxHash64` (its `serialize`
/// feature), whose own deserializer trusts `buffer_usage`: checked here
/// first.
#[derive(Serialize, Deserialize)]
struct XxHash64State {
    total_len: u64,
    seed: u64,
    core: [u64; 4],
    buffer: [u8; STRIPE],
    buffer_usage: usize,
}

#[derive(Deserialize)]
struct StreamHasherState {
    bytes: u64,
    hasher: XxHash64State,
}

impl<'de> Deserialize<'de> for StreamHasher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let state = StreamHasherState::deserialize(deserializer)?;
        let hasher = &state.hasher;
        if hasher.seed != 0
            || hasher.total_len != state.bytes
            || hasher.buffer_usage as u64 != hasher.total_len % STRIPE as u64
        {
            return Err(D::Error::custom("inconsistent stream digest state"));
        }
        // Checked, the state goes to twox-hash's deserializer in the shape
        // it reads.
        let bytes = postcard::to_allocvec(&state.hasher).map_err(D::Error::custom)?;
        let hasher = postcard::from_bytes(&bytes).map_err(D::Error::custom)?;
        Ok(Self {
            bytes: state.bytes,
            hasher,
        })
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

    #[test]
    fn a_serialized_hasher_goes_on_where_it_was() {
        let mut hasher = StreamHasher::default();
        hasher.update(&[7; 45]);
        let bytes = postcard::to_allocvec(&hasher).unwrap();
        let mut restored: StreamHasher = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(restored.digest(), hasher.digest());
        hasher.update(b"and more");
        restored.update(b"and more");
        assert_eq!(restored.digest(), hasher.digest());
    }

    #[test]
    fn a_damaged_hasher_state_is_refused() {
        let mut hasher = StreamHasher::default();
        hasher.update(&[7; 45]);
        let bytes = postcard::to_allocvec(&hasher).unwrap();
        // The last byte is the buffer's fill (13 = 45 % 32): any other
        // value, however large, would make twox-hash index out of bounds.
        for usage in [12, 32, 127] {
            let mut damaged = bytes.clone();
            *damaged.last_mut().unwrap() = usage;
            assert!(postcard::from_bytes::<StreamHasher>(&damaged).is_err());
        }
    }
}
