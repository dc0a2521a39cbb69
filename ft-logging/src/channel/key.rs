//! The pre-shared key both sides of a pair must know.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use hmac::Mac as _;

use super::frame::Mac;
use super::{ChannelError, KeyProblem};

/// The fewest bytes a key may have.
pub const MIN_KEY_LEN: usize = 16;
/// The most bytes a key file may hold.
pub const MAX_KEY_FILE: usize = 4096;

/// A pre-shared key. Its bytes never appear in logs or `Debug` output.
#[derive(Clone)]
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// Reads the key from a file: all of its bytes are the key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ChannelError> {
        let path = path.as_ref();
        let problem = |problem| ChannelError::Key {
            path: path.to_owned(),
            problem,
        };
        let mut bytes = Vec::new();
        // Reading one byte past the limit tells a file that is too large.
        File::open(path)
            .and_then(|file| file.take(MAX_KEY_FILE as u64 + 1).read_to_end(&mut bytes))
            .map_err(|error| problem(KeyProblem::Read(error)))?;
        if bytes.is_empty() {
            return Err(problem(KeyProblem::Empty));
        }
        if bytes.len() > MAX_KEY_FILE {
            return Err(problem(KeyProblem::TooLarge));
        }
        Self::from_bytes(bytes).map_err(problem)
    }

    /// A key of these bytes, refused when it is too short or too long.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyProblem> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyProblem::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// An HMAC-SHA256 keyed with this key.
    pub(super) fn mac(&self) -> Mac {
        Mac::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({} bytes)", self.0.len())
    }
}
