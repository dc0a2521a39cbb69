//! The go-live flag's on-disk record: a fixed-size, checksummed encoding of
//! a [`FlagState`].
//!
//! Layout (little-endian, 92 bytes, so it fits in one 512-byte sector and a
//! power loss on a disk with atomic sector writes leaves the old or the new
//! record; anything else fails the checksum):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `FTVMFLAG` |
//! | 8 | 4 | format version (1) |
//! | 12 | 8 | generation |
//! | 20 | 4 | owner length in bytes, 0 for no owner |
//! | 24 | 64 | owner name (UTF-8), zero-padded |
//! | 88 | 4 | CRC32C of bytes 0..88 |

use std::fmt;

/// Longest owner name the record holds, in bytes.
pub const MAX_OWNER_LEN: usize = 64;

/// Size of an encoded record; a valid file is exactly this long.
pub(super) const RECORD_LEN: usize = 92;

const MAGIC: [u8; 8] = *b"FTVMFLAG";
const VERSION: u32 = 1;

const VERSION_AT: usize = 8;
const GENERATION_AT: usize = 12;
const OWNER_LEN_AT: usize = 20;
const OWNER_AT: usize = 24;
const CRC_AT: usize = OWNER_AT + MAX_OWNER_LEN;

/// What the go-live flag says: the generation of the current primary/backup
/// pair and who, if anyone, went live in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagState {
    /// The generation a pair forms at.
    pub generation: u64,
    /// Who is live in it, if anyone.
    pub owner: Option<String>,
}

impl fmt::Display for FlagState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "generation {}, owned by {owner:?}", self.generation),
            None => write!(f, "generation {}, no owner", self.generation),
        }
    }
}

/// Why bytes are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// It is not a go-live flag (bad magic).
    #[error("it is not a go-live flag (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported format version {found} (this build reads version {VERSION})")]
    UnsupportedVersion {
        /// The file's version.
        found: u32,
    },
    /// It is too short to be a flag.
    #[error("it is {found} bytes long, a flag is {RECORD_LEN}")]
    TooShort {
        /// Its length.
        found: usize,
    },
    /// It is too long to be a flag.
    #[error("it is longer than a flag's {RECORD_LEN} bytes")]
    TooLong,
    /// Its checksum does not match its contents.
    #[error(
        "checksum mismatch: the record carries 0x{stored:08x}, its contents hash to 0x{computed:08x}"
    )]
    Checksum {
        /// The checksum stored.
        stored: u32,
        /// The checksum computed.
        computed: u32,
    },
    /// Its owner field is malformed.
    #[error("malformed owner field: {problem}")]
    Owner {
        /// What is wrong.
        problem: &'static str,
    },
}

impl FlagState {
    /// Encodes the state. The owner must be at most [`MAX_OWNER_LEN`] bytes;
    /// the arbiter validates names before they get here.
    pub(super) fn encode(&self) -> [u8; RECORD_LEN] {
        let owner = self.owner.as_deref().unwrap_or_default().as_bytes();
        let mut record = [0u8; RECORD_LEN];
        record[..VERSION_AT].copy_from_slice(&MAGIC);
        record[VERSION_AT..GENERATION_AT].copy_from_slice(&VERSION.to_le_bytes());
        record[GENERATION_AT..OWNER_LEN_AT].copy_from_slice(&self.generation.to_le_bytes());
        // Lossless: owner.len() <= MAX_OWNER_LEN, which the slice below enforces.
        record[OWNER_LEN_AT..OWNER_AT].copy_from_slice(&(owner.len() as u32).to_le_bytes());
        record[OWNER_AT..OWNER_AT + owner.len()].copy_from_slice(owner);
        let crc = crc32c::crc32c(&record[..CRC_AT]);
        record[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        record
    }

    /// Decodes a file's contents; reading `RECORD_LEN + 1` bytes is enough
    /// to tell a file that is too long. Checks run from the most telling (not
    /// a flag at all, another format version) to the most detailed, and the
    /// checksum covers every byte, so a torn or foreign file is refused.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.get(..VERSION_AT) != Some(&MAGIC[..]) {
            return Err(RecordError::BadMagic);
        }
        let version = bytes
            .get(VERSION_AT..GENERATION_AT)
            .map(|field| u32::from_le_bytes(field.try_into().expect("4-byte field")))
            .ok_or(RecordError::TooShort { found: bytes.len() })?;
        if version != VERSION {
            return Err(RecordError::UnsupportedVersion { found: version });
        }
        let record: &[u8; RECORD_LEN] = match bytes.len() {
            RECORD_LEN => bytes.try_into().expect("length checked"),
            found if found < RECORD_LEN => return Err(RecordError::TooShort { found }),
            _ => return Err(RecordError::TooLong),
        };

        let stored = u32::from_le_bytes(field(record, CRC_AT));
        let computed = crc32c::crc32c(&record[..CRC_AT]);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }

        let generation = u64::from_le_bytes(field(record, GENERATION_AT));
        let owner_len = u32::from_le_bytes(field(record, OWNER_LEN_AT)) as usize;
        let owner_field = &record[OWNER_AT..CRC_AT];
        if owner_len > MAX_OWNER_LEN {
            return Err(RecordError::Owner {
                problem: "longer than 64 bytes",
            });
        }
        let (name, padding) = owner_field.split_at(owner_len);
        if padding.iter().any(|&b| b != 0) {
            return Err(RecordError::Owner {
                problem: "non-zero padding",
            });
        }
        let owner = match name {
            [] => None,
            name => Some(
                std::str::from_utf8(name)
                    .map_err(|_| RecordError::Owner {
                        problem: "not UTF-8",
                    })?
                    .to_owned(),
            ),
        };
        Ok(FlagState { generation, owner })
    }
}

/// The fixed-size field of `record` starting at `at`.
fn field<const N: usize>(record: &[u8; RECORD_LEN], at: usize) -> [u8; N] {
    record[at..at + N]
        .try_into()
        .expect("field inside the record")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(generation: u64, owner: &str) -> FlagState {
        FlagState {
            generation,
            owner: Some(owner.to_owned()),
        }
    }

    /// Re-seals a hand-edited record so only the edit, not the checksum, is
    /// what the decoder sees.
    fn reseal(record: &mut [u8; RECORD_LEN]) {
        let crc = crc32c::crc32c(&record[..CRC_AT]);
        record[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trips() {
        for state in [
            FlagState {
                generation: 0,
                owner: None,
            },
            owned(7, "backup@10.0.0.2"),
            owned(u64::MAX, &"x".repeat(MAX_OWNER_LEN)),
            owned(1, "ünïcødé"),
        ] {
            assert_eq!(FlagState::decode(&state.encode()), Ok(state));
        }
    }

    #[test]
    fn layout_is_pinned() {
        let record = owned(0x0102_0304_0506_0708, "ab").encode();
        assert_eq!(&record[..8], b"FTVMFLAG");
        assert_eq!(record[8..12], [1, 0, 0, 0]);
        assert_eq!(record[12..20], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(record[20..24], [2, 0, 0, 0]);
        assert_eq!(&record[24..26], b"ab");
        assert!(record[26..88].iter().all(|&b| b == 0));
        assert_eq!(
            record[88..],
            crc32c::crc32c(&record[..88]).to_le_bytes(),
            "the checksum covers everything before it"
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let record = owned(3, "primary@10.0.0.1").encode();
        for byte in 0..RECORD_LEN {
            for bit in 0..8 {
                let mut damaged = record;
                damaged[byte] ^= 1 << bit;
                assert!(
                    FlagState::decode(&damaged).is_err(),
                    "flipping bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn refuses_wrong_lengths() {
        let record = owned(3, "primary").encode();
        assert_eq!(FlagState::decode(&[]), Err(RecordError::BadMagic));
        assert_eq!(FlagState::decode(&record[..4]), Err(RecordError::BadMagic));
        assert_eq!(
            FlagState::decode(&record[..10]),
            Err(RecordError::TooShort { found: 10 })
        );
        assert_eq!(
            FlagState::decode(&record[..RECORD_LEN - 1]),
            Err(RecordError::TooShort {
                found: RECORD_LEN - 1
            })
        );
        let mut longer = record.to_vec();
        longer.push(0);
        assert_eq!(FlagState::decode(&longer), Err(RecordError::TooLong));
    }

    #[test]
    fn refuses_other_versions_before_looking_further() {
        let mut record = owned(3, "primary").encode();
        record[VERSION_AT] = 2;
        reseal(&mut record);
        assert_eq!(
            FlagState::decode(&record),
            Err(RecordError::UnsupportedVersion { found: 2 })
        );
        // A later version may be longer; it is still reported as a version.
        assert_eq!(
            FlagState::decode(&[&record[..], &[0; 8]].concat()),
            Err(RecordError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn refuses_sealed_but_malformed_owners() {
        let mut too_long = owned(1, "a").encode();
        too_long[OWNER_LEN_AT] = MAX_OWNER_LEN as u8 + 1;
        reseal(&mut too_long);

        let mut padded = owned(1, "a").encode();
        padded[OWNER_AT + 5] = b'z';
        reseal(&mut padded);

        let mut not_utf8 = owned(1, "ab").encode();
        not_utf8[OWNER_AT] = 0xff;
        reseal(&mut not_utf8);

        for (record, problem) in [
            (too_long, "longer than 64 bytes"),
            (padded, "non-zero padding"),
            (not_utf8, "not UTF-8"),
        ] {
            assert_eq!(
                FlagState::decode(&record),
                Err(RecordError::Owner { problem })
            );
        }
    }

    #[test]
    fn displays_for_status() {
        assert_eq!(
            FlagState {
                generation: 4,
                owner: None
            }
            .to_string(),
            "generation 4, no owner"
        );
        assert_eq!(
            owned(5, "backup@10.0.0.2").to_string(),
            "generation 5, owned by \"backup@10.0.0.2\""
        );
    }
}
