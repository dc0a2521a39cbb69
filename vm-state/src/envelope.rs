//! The encoding every state unit shares:
//!
//! ```text
//! magic "FTVMSTAT" | format version: u32 LE | kind: u8 | body length: u64 LE
//! | body | CRC32C of everything before it: u32 LE
//! ```
//!
//! The body is postcard: the platform version string, then the unit. A
//! decoder checks the magic, the version (a state of another version may
//! be laid out otherwise), the length and the checksum before it reads
//! anything else, then the kind and the platform, then the unit; the unit
//! itself is then checked by its type.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StateError;
use ftvm_core::platform::PLATFORM_VERSION;

/// Version of the state encoding; a change bumps it.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: [u8; 8] = *b"FTVMSTAT";
/// Magic, version, kind, length.
const PREFIX: usize = 8 + 4 + 1 + 8;
const CRC: usize = 4;

/// What an encoded unit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A [`VmState`](crate::VmState): everything, memory included.
    Vm = 1,
    /// A [`MachineState`](crate::MachineState): vCPU, core, devices.
    Machine = 2,
    /// A [`PageSet`](crate::PageSet): guest memory pages.
    Pages = 3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Vm => "a whole VM state",
            Kind::Machine => "a machine state",
            Kind::Pages => "a set of memory pages",
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        [Kind::Vm, Kind::Machine, Kind::Pages]
            .into_iter()
            .find(|kind| *kind as u8 == byte)
    }
}

/// Wraps an already encoded `body` (the platform version then the unit,
/// in postcard) in the envelope. [`encode`] does both; this is for tools
/// that build bodies themselves, such as the fuzz target.
pub fn seal(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PREFIX + body.len() + CRC);
    begin(&mut bytes, kind);
    bytes.extend_from_slice(body);
    finish(bytes)
}

fn begin(bytes: &mut Vec<u8>, kind: Kind) {
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.push(kind as u8);
    bytes.extend_from_slice(&0u64.to_le_bytes());
}

fn finish(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = (bytes.len() - PREFIX) as u64;
    bytes[PREFIX - 8..PREFIX].copy_from_slice(&body.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Encodes `value` as a unit of `kind`.
pub(crate) fn encode<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    begin(&mut bytes, kind);
    // Serializing plain data into a growing vector cannot fail.
    let bytes = postcard::to_extend(&(PLATFORM_VERSION, value), bytes)
        .expect("a state serializes into memory");
    finish(bytes)
}

/// Decodes a unit of `kind`; nothing about the unit's contents is checked
/// yet.
pub(crate) fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, StateError> {
    let truncated = |needed: usize| StateError::Truncated {
        needed: needed as u64,
        found: bytes.len() as u64,
    };
    let magic = bytes.get(..MAGIC.len()).ok_or(StateError::NotAState)?;
    if magic != MAGIC {
        return Err(StateError::NotAState);
    }
    let prefix = bytes.get(..PREFIX).ok_or_else(|| truncated(PREFIX + CRC))?;
    let version = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(StateError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let body_len = u64::from_le_bytes(prefix[13..PREFIX].try_into().expect("8 bytes"));
    let needed = body_len.saturating_add((PREFIX + CRC) as u64);
    let found = bytes.len() as u64;
    if found < needed {
        return Err(StateError::Truncated { needed, found });
    }
    if found > needed {
        return Err(StateError::TrailingBytes((found - needed) as usize));
    }
    let (covered, crc) = bytes.split_at(bytes.len() - CRC);
    if crc32c::crc32c(covered) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(StateError::Checksum);
    }
    let found_kind = prefix[12];
    if found_kind != kind as u8 {
        return Err(StateError::Kind {
            expected: kind.name(),
            found: Kind::from_byte(found_kind).map_or("of an unknown kind", Kind::name),
        });
    }
    let body = &covered[PREFIX..];
    let (platform, rest) =
        postcard::take_from_bytes::<String>(body).map_err(StateError::Malformed)?;
    if platform != PLATFORM_VERSION {
        return Err(StateError::Platform {
            found: platform,
            ours: PLATFORM_VERSION,
        });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(rest).map_err(StateError::Malformed)?;
    if !rest.is_empty() {
        return Err(StateError::Invalid(format!(
            "{} bytes after its contents",
            rest.len()
        )));
    }
    Ok(value)
}
