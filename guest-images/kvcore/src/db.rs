//! The keyspace: keys to values, with expiry deadlines.
//!
//! Keys are kept in the order of a 64-bit hash of them (bucketed, for the
//! rare collision): SCAN's cursor is the hash to resume from, so a SCAN
//! returns every key present throughout it however the keyspace changes
//! meanwhile, and the log compactor walks the keyspace the same way.
//!
//! Expiry: a key past its deadline is invisible. A write that touches it
//! deletes it, after reading the clock, and a logged command is replayed
//! with the time it ran at, so the replay deletes it at the same point;
//! reads never delete, so that nothing changes the store that the log does
//! not also change. Keys nobody touches are deleted by the store's active
//! expiry ([`crate::Kv::expire_due`]), which logs its deletions.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::value::Value;

/// The time in Unix milliseconds, read only when a command needs it.
pub(crate) trait Clock {
    fn now_ms(&mut self) -> u64;
}

pub(crate) struct Slot {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Value,
    /// The deadline in Unix milliseconds.
    pub(crate) expires: Option<u64>,
}

/// Where the log compactor has got to, and the keys changed behind it.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Buckets below this hash have been written out.
    pub(crate) written_below: u64,
    /// Keys written out and changed since.
    pub(crate) changed: BTreeSet<Vec<u8>>,
    /// FLUSHALL ran: the image is void.
    pub(crate) flushed: bool,
}

#[derive(Default)]
pub struct Db {
    buckets: BTreeMap<u64, Vec<Slot>>,
    len: usize,
    /// (deadline, key) of every key that has one.
    expires: BTreeSet<(u64, Vec<u8>)>,
    /// Counts changes, so a command's caller knows whether to log it.
    dirty: u64,
    tracker: Option<Tracker>,
}

/// The bucket of a key: never 0, which is SCAN's start and end.
pub(crate) fn hash(key: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, key).max(1)
}

impl Db {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn expiring(&self) -> usize {
        self.expires.len()
    }

    pub(crate) fn dirty(&self) -> u64 {
        self.dirty
    }

    fn touch(&mut self, hash: u64, key: &[u8]) {
        self.dirty += 1;
        if let Some(tracker) = &mut self.tracker
            && hash < tracker.written_below
        {
            tracker.changed.insert(key.to_vec());
        }
    }

    fn position(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.buckets
            .get(&hash)?
            .iter()
            .position(|slot| slot.key == key)
    }

    fn slot_at(&self, hash: u64, index: usize) -> Option<&Slot> {
        self.buckets.get(&hash)?.get(index)
    }

    /// The slot of `key` unless its deadline passed. Reads never delete an
    /// expired key (see the module's comment): they only do not see it.
    pub(crate) fn get(&self, key: &[u8], clock: &mut dyn Clock) -> Option<&Slot> {
        let hash = hash(key);
        let slot = self.slot_at(hash, self.position(hash, key)?)?;
        let expired = slot
            .expires
            .is_some_and(|deadline| deadline <= clock.now_ms());
        (!expired).then_some(slot)
    }

    pub(crate) fn contains(&self, key: &[u8], clock: &mut dyn Clock) -> bool {
        self.get(key, clock).is_some()
    }

    /// For a write: deletes `key` if its deadline passed; whether it is
    /// there (alive).
    pub(crate) fn purge(&mut self, key: &[u8], clock: &mut dyn Clock) -> bool {
        let hash = hash(key);
        let Some(deadline) = self
            .position(hash, key)
            .and_then(|index| self.slot_at(hash, index))
            .map(|slot| slot.expires)
        else {
            return false;
        };
        if deadline.is_some_and(|deadline| deadline <= clock.now_ms()) {
            self.remove(key);
            return false;
        }
        true
    }

    /// The live value of `key` to change in place: counts as a change.
    pub(crate) fn get_mut(&mut self, key: &[u8], clock: &mut dyn Clock) -> Option<&mut Value> {
        if !self.purge(key, clock) {
            return None;
        }
        let hash = hash(key);
        let index = self.position(hash, key)?;
        self.touch(hash, key);
        Some(&mut self.buckets.get_mut(&hash)?.get_mut(index)?.value)
    }

    /// The number of keys whose deadline has not passed.
    pub(crate) fn live_len(&self, clock: &mut dyn Clock) -> usize {
        if self.expires.is_empty() {
            return self.len;
        }
        let now = clock.now_ms();
        let expired = self
            .expires
            .range(..(now.saturating_add(1), Vec::new()))
            .count();
        self.len - expired
    }

    /// Sets `key` to `value`, keeping its deadline only if `keep_ttl` (a
    /// write that keeps it purges the key first).
    pub(crate) fn set(&mut self, key: &[u8], value: Value, keep_ttl: bool) {
        let hash = hash(key);
        self.touch(hash, key);
        match self.position(hash, key) {
            Some(index) => {
                let Some(slot) = self
                    .buckets
                    .get_mut(&hash)
                    .and_then(|bucket| bucket.get_mut(index))
                else {
                    return;
                };
                slot.value = value;
                if !keep_ttl && let Some(deadline) = slot.expires.take() {
                    self.expires.remove(&(deadline, key.to_vec()));
                }
            }
            None => {
                self.buckets.entry(hash).or_default().push(Slot {
                    key: key.to_vec(),
                    value,
                    expires: None,
                });
                self.len += 1;
            }
        }
    }

    /// Removes `key` (expired or not); its value if it was there.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Value> {
        let hash = hash(key);
        let index = self.position(hash, key)?;
        self.touch(hash, key);
        let bucket = self.buckets.get_mut(&hash)?;
        let slot = bucket.swap_remove(index);
        if bucket.is_empty() {
            self.buckets.remove(&hash);
        }
        self.len -= 1;
        if let Some(deadline) = slot.expires {
            self.expires.remove(&(deadline, slot.key));
        }
        Some(slot.value)
    }

    /// Deletes `key` if its collection became empty.
    pub(crate) fn remove_if_empty(&mut self, key: &[u8]) {
        let hash = hash(key);
        let empty = self.position(hash, key).is_some_and(|index| {
            self.buckets
                .get(&hash)
                .and_then(|bucket| bucket.get(index))
                .is_some_and(|slot| slot.value.is_empty_collection())
        });
        if empty {
            self.remove(key);
        }
    }

    /// Sets or clears the deadline of an existing key; whether it exists.
    pub(crate) fn set_expiry(&mut self, key: &[u8], deadline: Option<u64>) -> bool {
        let hash = hash(key);
        let Some(index) = self.position(hash, key) else {
            return false;
        };
        self.touch(hash, key);
        let Some(slot) = self
            .buckets
            .get_mut(&hash)
            .and_then(|bucket| bucket.get_mut(index))
        else {
            return false;
        };
        if let Some(old) = slot.expires {
            self.expires.remove(&(old, key.to_vec()));
        }
        slot.expires = deadline;
        if let Some(new) = deadline {
            self.expires.insert((new, key.to_vec()));
        }
        true
    }

    /// Up to `max` keys whose deadline is at or before `now`.
    pub(crate) fn due(&self, now: u64, max: usize) -> Vec<Vec<u8>> {
        self.expires
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .take(max)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// The deadline of the next key to expire.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.expires.first().map(|(deadline, _)| *deadline)
    }

    pub(crate) fn clear(&mut self) {
        self.dirty += 1;
        self.buckets.clear();
        self.expires.clear();
        self.len = 0;
        if let Some(tracker) = &mut self.tracker {
            tracker.flushed = true;
        }
    }

    /// Visits the slots of whole buckets from hash `from` on, until
    /// `visit` says it has had enough: the hash to resume from (0 at the
    /// end).
    pub(crate) fn walk(&self, from: u64, mut visit: impl FnMut(&Slot) -> bool) -> u64 {
        let mut buckets = self.buckets.range(from..);
        while let Some((_, bucket)) = buckets.next() {
            let mut enough = false;
            for slot in bucket {
                enough |= visit(slot);
            }
            if enough {
                return buckets.next().map_or(0, |(&hash, _)| hash);
            }
        }
        0
    }

    pub(crate) fn slot(&self, key: &[u8]) -> Option<&Slot> {
        let hash = hash(key);
        let index = self.position(hash, key)?;
        self.buckets.get(&hash)?.get(index)
    }

    pub(crate) fn tracker(&mut self) -> Option<&mut Tracker> {
        self.tracker.as_mut()
    }

    pub(crate) fn start_tracking(&mut self) {
        self.tracker = Some(Tracker::default());
    }

    pub(crate) fn stop_tracking(&mut self) -> Option<Tracker> {
        self.tracker.take()
    }
}
