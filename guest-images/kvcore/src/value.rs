//! The values a key can hold.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use crate::score::Score;

pub(crate) enum Value {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    ZSet(ZSet),
}

impl Value {
    /// What TYPE answers.
    pub(crate) fn type_name(&self) -> &'static [u8] {
        match self {
            Self::Str(_) => b"string",
            Self::List(_) => b"list",
            Self::Set(_) => b"set",
            Self::Hash(_) => b"hash",
            Self::ZSet(_) => b"zset",
        }
    }

    /// A collection's number of elements (a string's length in bytes).
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Str(bytes) => bytes.len(),
            Self::List(list) => list.len(),
            Self::Set(set) => set.len(),
            Self::Hash(hash) => hash.len(),
            Self::ZSet(zset) => zset.len(),
        }
    }

    /// Whether a collection lost its last element (Redis then deletes the
    /// key); strings may be empty.
    pub(crate) fn is_empty_collection(&self) -> bool {
        match self {
            Self::Str(_) => false,
            Self::List(list) => list.is_empty(),
            Self::Set(set) => set.is_empty(),
            Self::Hash(hash) => hash.is_empty(),
            Self::ZSet(zset) => zset.is_empty(),
        }
    }
}

/// A sorted set: members by score (ties by member), and each member's
/// score.
#[derive(Default)]
pub(crate) struct ZSet {
    scores: BTreeMap<Vec<u8>, Score>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub(crate) fn score(&self, member: &[u8]) -> Option<Score> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score; whether the member is new.
    pub(crate) fn insert(&mut self, member: Vec<u8>, score: Score) -> bool {
        match self.scores.get_mut(&member) {
            Some(old) => {
                if old.to_bits() != score.to_bits() {
                    self.order.remove(&(*old, member.clone()));
                    *old = score;
                    self.order.insert((score, member));
                }
                false
            }
            None => {
                self.order.insert((score, member.clone()));
                self.scores.insert(member, score);
                true
            }
        }
    }

    pub(crate) fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.order.remove(&(score, member.to_vec()));
                true
            }
            None => false,
        }
    }

    /// Members in score order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], Score)> {
        self.order
            .iter()
            .map(|(score, member)| (member.as_slice(), *score))
    }

    pub(crate) fn pop_min(&mut self) -> Option<(Vec<u8>, Score)> {
        let (score, member) = self.order.pop_first()?;
        self.scores.remove(&member);
        Some((member, score))
    }
}
