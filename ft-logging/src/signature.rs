//! The exit signature: a running hash of every counted exit, carried by
//! every record so that a divergence is found where it starts.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

/// A running hash over every counted exit: a replay that takes another path
/// shows a different signature at the first record after it diverged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExitSignature(u64);

impl ExitSignature {
    /// Folds one exit, described by its kind, port or address, data and the
    /// guest's instruction pointer, into the signature.
    pub fn fold(&mut self, kind: u8, address: u64, data: u64, rip: u64) {
        let mut bytes = [0u8; 25];
        bytes[0] = kind;
        bytes[1..9].copy_from_slice(&address.to_le_bytes());
        bytes[9..17].copy_from_slice(&data.to_le_bytes());
        bytes[17..25].copy_from_slice(&rip.to_le_bytes());
        self.0 = XxHash64::oneshot(self.0, &bytes);
    }

    /// Condenses an access's data into one word for [`fold`](Self::fold):
    /// the bytes themselves when they fit, their hash when they do not.
    pub fn data_word(data: &[u8]) -> u64 {
        match data.len() {
            0..=8 => {
                let mut word = [0u8; 8];
                word[..data.len()].copy_from_slice(data);
                u64::from_le_bytes(word)
            }
            _ => XxHash64::oneshot(0, data),
        }
    }

    /// The signature as carried by a record.
    pub fn value(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_content_change_the_signature() {
        let mut a = ExitSignature::default();
        a.fold(1, 0x3f8, 0x41, 0x1000);
        a.fold(2, 0x40, 0, 0x1002);
        let mut b = ExitSignature::default();
        b.fold(2, 0x40, 0, 0x1002);
        b.fold(1, 0x3f8, 0x41, 0x1000);
        let mut c = ExitSignature::default();
        c.fold(1, 0x3f8, 0x42, 0x1000);
        c.fold(2, 0x40, 0, 0x1002);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut again = ExitSignature::default();
        again.fold(1, 0x3f8, 0x41, 0x1000);
        again.fold(2, 0x40, 0, 0x1002);
        assert_eq!(a, again);
    }
}
