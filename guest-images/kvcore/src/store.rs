//! The key-value map the commands act on and the log rebuilds.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::log::Change;

/// The database: binary keys to binary values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Store {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
    }

    /// Applies a command's log entry ([`crate::Outcome::log`]) once it is
    /// durable; whether it was a valid entry.
    pub fn apply_entry(&mut self, entry: &[u8]) -> bool {
        let change = Change::decode(entry);
        if let Some(change) = &change {
            self.apply(change);
        }
        change.is_some()
    }

    /// Applies a change, whether made live by a command or read back from
    /// the log: both paths go through here so replay matches the original.
    pub(crate) fn apply(&mut self, change: &Change<'_>) {
        match change {
            Change::Set { key, value } => self.set(key, value),
            Change::Delete(keys) => {
                for key in keys {
                    self.remove(key);
                }
            }
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        match self.map.get_mut(key) {
            Some(slot) => {
                slot.clear();
                slot.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        self.map.remove(key);
    }
}
