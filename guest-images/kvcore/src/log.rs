//! The write-ahead log: one record per change to the store, appended to a
//! region of the disk that starts at sector 0 and rebuilt from on boot.
//!
//! A command's [`Outcome::log`](crate::Outcome::log) is an *entry*:
//!
//! - `S` (0x53), varint key length, key, value: set key to value;
//! - `D` (0x44), then per key a varint length and the key: delete the keys
//!   (at least one).
//!
//! [`LogWriter::append`] frames an entry into a *record*: the entry's
//! length as a varint, the entry, and a CRC-32C (little-endian) over the
//! previous record's CRC (little-endian; a fixed seed for the first record)
//! followed by the length and entry. Varints are unsigned LEB128.
//!
//! A record is valid when it is complete, its length is not zero, its CRC
//! matches and its entry decodes. Zero bytes, as on a fresh disk, are
//! therefore no record, and a write torn anywhere leaves an invalid record.
//! Chaining each CRC to the previous one makes an older record left beyond
//! the end of the log (say, after a corrupt record was overwritten by a
//! new one ending on a sector boundary) invalid too, so it is never
//! replayed after newer ones.

use alloc::vec::Vec;

use crate::Store;
use crate::crc32c::Crc32c;
use crate::int;

/// The disk's sector size: the log is written in whole sectors.
pub const SECTOR_SIZE: usize = 512;

const SET: u8 = b'S';
const DELETE: u8 = b'D';

/// The CRC the first record chains from ("KVLG").
const CHAIN_SEED: u32 = 0x4b56_4c47;

/// The bytes of a record after its entry.
const CRC_LEN: usize = 4;

/// A change to the store, as logged.
pub(crate) enum Change<'a> {
    Set {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// Keys that existed, each once.
    Delete(Vec<&'a [u8]>),
}

impl<'a> Change<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut entry = Vec::new();
        match self {
            Self::Set { key, value } => {
                entry.reserve(key.len() + value.len() + 11);
                entry.push(SET);
                int::push_varint(&mut entry, key.len() as u64);
                entry.extend_from_slice(key);
                entry.extend_from_slice(value);
            }
            Self::Delete(keys) => {
                entry.push(DELETE);
                for key in keys {
                    int::push_varint(&mut entry, key.len() as u64);
                    entry.extend_from_slice(key);
                }
            }
        }
        entry
    }

    /// The change an entry describes; `None` if it is malformed.
    pub(crate) fn decode(entry: &'a [u8]) -> Option<Self> {
        let (&kind, mut body) = entry.split_first()?;
        match kind {
            SET => {
                let key = next_key(&mut body)?;
                Some(Self::Set { key, value: body })
            }
            DELETE => {
                let mut keys = Vec::new();
                while !body.is_empty() {
                    keys.push(next_key(&mut body)?);
                }
                (!keys.is_empty()).then_some(Self::Delete(keys))
            }
            _ => None,
        }
    }
}

/// Takes a varint-prefixed key off the front of `body`.
fn next_key<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, varint_len) = int::read_varint(body)?;
    let end = varint_len.checked_add(usize::try_from(len).ok()?)?;
    let key = body.get(varint_len..end)?;
    *body = body.get(end..)?;
    Some(key)
}

/// The CRC of a record whose length and entry are `framed`.
fn record_crc(chain: u32, framed: &[u8]) -> u32 {
    Crc32c::new()
        .update(&chain.to_le_bytes())
        .update(framed)
        .finish()
}

/// The valid record at the start of `log`, if any: its entry, its CRC
/// (the next record's chain) and its length.
fn read_record(log: &[u8], chain: u32) -> Option<(&[u8], u32, usize)> {
    let (len, varint_len) = int::read_varint(log)?;
    if len == 0 {
        return None;
    }
    let end = varint_len.checked_add(usize::try_from(len).ok()?)?;
    let entry = log.get(varint_len..end)?;
    let stored = log.get(end..end.checked_add(CRC_LEN)?)?;
    let stored = u32::from_le_bytes(stored.try_into().ok()?);
    let crc = record_crc(chain, log.get(..end)?);
    (crc == stored).then_some((entry, crc, end + CRC_LEN))
}

/// Rebuilds a store from the log region's bytes (read from disk from
/// sector 0): applies every valid record in order and stops at the first
/// invalid, torn or zero one. Returns the store and the byte length of the
/// valid log, which [`LogWriter::new`] takes.
pub fn rebuild(log: &[u8]) -> (Store, usize) {
    let mut store = Store::new();
    let mut valid = 0;
    let mut chain = CHAIN_SEED;
    while let Some((entry, crc, len)) = read_record(log.get(valid..).unwrap_or_default(), chain) {
        let Some(change) = Change::decode(entry) else {
            break;
        };
        store.apply(&change);
        valid += len;
        chain = crc;
    }
    (store, valid)
}

/// Appends records to a sector-addressed log.
///
/// The disk must hold each returned write before the next is made (the
/// tail sector is rewritten whole by the next append). The writer does not
/// know the log region's size: the server checks that a write fits, and
/// takes a clone back when it does not.
#[derive(Clone)]
pub struct LogWriter {
    /// The length of the valid log, in bytes.
    valid: usize,
    /// The valid bytes of the last, partial sector.
    tail: Vec<u8>,
    /// The last record's CRC, which the next one chains from.
    chain: u32,
}

impl LogWriter {
    /// A writer continuing the log in `log`, the bytes [`rebuild`] read,
    /// whose first `valid` bytes (as [`rebuild`] returned) are valid: it
    /// keeps the partial last sector to rewrite it whole, and the last
    /// record's CRC to chain the next one from. `LogWriter::new(&[], 0)`
    /// starts a fresh log.
    ///
    /// `valid` is clamped to `log.len()`.
    pub fn new(log: &[u8], valid: usize) -> Self {
        let valid = valid.min(log.len());
        let tail_start = valid - valid % SECTOR_SIZE;
        let last_crc = valid
            .checked_sub(CRC_LEN)
            .and_then(|start| log.get(start..valid))
            .and_then(|bytes| Some(u32::from_le_bytes(bytes.try_into().ok()?)));
        Self {
            valid,
            tail: log.get(tail_start..valid).unwrap_or_default().to_vec(),
            chain: last_crc.unwrap_or(CHAIN_SEED),
        }
    }

    /// The length of the valid log in bytes: where the next record goes.
    pub fn len(&self) -> usize {
        self.valid
    }

    pub fn is_empty(&self) -> bool {
        self.valid == 0
    }

    /// Appends one entry (an [`Outcome::log`](crate::Outcome::log)) as a
    /// record. Returns the first sector (of [`SECTOR_SIZE`] bytes) to write
    /// and the bytes to write there: the old partial tail sector rewritten
    /// whole, then the new record, zero-padded to a sector boundary.
    pub fn append(&mut self, entry: &[u8]) -> (u64, Vec<u8>) {
        let sector = (self.valid / SECTOR_SIZE) as u64;
        let mut bytes = core::mem::take(&mut self.tail);
        let record_start = bytes.len();
        int::push_varint(&mut bytes, entry.len() as u64);
        bytes.extend_from_slice(entry);
        let crc = record_crc(self.chain, bytes.get(record_start..).unwrap_or_default());
        bytes.extend_from_slice(&crc.to_le_bytes());
        self.valid += bytes.len() - record_start;
        self.chain = crc;
        let tail_start = bytes.len() - bytes.len() % SECTOR_SIZE;
        self.tail = bytes.get(tail_start..).unwrap_or_default().to_vec();
        bytes.resize(bytes.len().next_multiple_of(SECTOR_SIZE), 0);
        (sector, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;
    use crate::tests::{XorShift, multibulk};
    use alloc::vec;
    use std::format;

    fn set(key: &[u8], value: &[u8]) -> Vec<u8> {
        Change::Set { key, value }.encode()
    }

    fn delete(keys: &[&[u8]]) -> Vec<u8> {
        Change::Delete(keys.to_vec()).encode()
    }

    /// A disk: writes land at their sector.
    struct Disk(Vec<u8>);

    impl Disk {
        fn new(sectors: usize) -> Self {
            Self(vec![0; sectors * SECTOR_SIZE])
        }

        fn write(&mut self, sector: u64, bytes: &[u8]) {
            let start = sector as usize * SECTOR_SIZE;
            self.0[start..start + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// Appends `entries` to a fresh log; the log's bytes and the end of
    /// each record.
    fn log_of(entries: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut disk = Disk::new(64);
        let mut writer = LogWriter::new(&[], 0);
        let mut ends = Vec::new();
        for entry in entries {
            let (sector, bytes) = writer.append(entry);
            disk.write(sector, &bytes);
            ends.push(writer.len());
        }
        (disk.0, ends)
    }

    fn entries(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        store
            .iter()
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect()
    }

    #[test]
    fn entries_round_trip() {
        for entry in [
            set(b"k", b"v"),
            set(b"", b""),
            set(&[7; 300], &[0; 1000]),
            delete(&[b"a"]),
            delete(&[b"a", b"", &[1; 200]]),
        ] {
            let change = Change::decode(&entry).unwrap();
            assert_eq!(change.encode(), entry);
        }
        assert_eq!(set(b"k", b"v"), b"S\x01kv");
        assert_eq!(delete(&[b"a", b"bc"]), b"D\x01a\x02bc");
        for bad in [
            &b""[..],
            b"S",
            b"S\x05ab",
            b"D",
            b"D\x02a",
            b"X\x01a",
            b"\0",
            b"S\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert!(Change::decode(bad).is_none());
        }
    }

    #[test]
    fn records_round_trip() {
        let (log, ends) = log_of(&[set(b"a", b"1"), set(b"b", b"2"), delete(&[b"a"])]);
        // varint length, entry, CRC.
        assert_eq!(ends, [1 + 4 + 4, 18, 18 + 1 + 3 + 4]);
        assert_eq!(&log[..5], b"\x04S\x01a1");
        let crc = record_crc(CHAIN_SEED, b"\x04S\x01a1");
        assert_eq!(log[5..9], crc.to_le_bytes());
        let (store, valid) = rebuild(&log);
        assert_eq!(valid, 26);
        assert_eq!(entries(&store), [(b"b".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn a_fresh_disk_is_an_empty_log() {
        for log in [&[][..], &[0; 4096], &[0; 3]] {
            let (store, valid) = rebuild(log);
            assert!(store.is_empty());
            assert_eq!(valid, 0);
        }
    }

    #[test]
    fn rebuild_stops_at_a_torn_record() {
        let records = [set(b"a", b"1"), set(b"b", &[b'x'; 700]), set(b"c", b"3")];
        let (log, ends) = log_of(&records);
        // Cut the last record anywhere: the first two survive.
        for cut in ends[1]..ends[2] {
            let mut torn = log[..cut].to_vec();
            torn.resize(log.len(), 0);
            let (store, valid) = rebuild(&torn);
            assert_eq!(valid, ends[1], "cut at {cut}");
            assert_eq!(store.len(), 2);
            assert_eq!(rebuild(&log[..cut]).1, ends[1]);
        }
        assert_eq!(rebuild(&log).1, ends[2]);
    }

    #[test]
    fn rebuild_stops_at_a_corrupt_record() {
        let records = [
            set(b"a", b"1"),
            set(b"b", b"22"),
            delete(&[b"a"]),
            set(b"c", b"3"),
        ];
        let (log, ends) = log_of(&records);
        for index in ends[0]..ends[1] {
            for flip in [0x01, 0x80, 0xff] {
                let mut corrupt = log.clone();
                corrupt[index] ^= flip;
                let (store, valid) = rebuild(&corrupt);
                assert_eq!(valid, ends[0], "byte {index} ^ {flip}");
                assert_eq!(entries(&store), [(b"a".to_vec(), b"1".to_vec())]);
            }
        }
    }

    #[test]
    fn a_stale_record_after_a_rewritten_one_is_not_replayed() {
        // Record 1 ends exactly on a sector boundary; record 2 follows.
        let first = set(b"a", &vec![b'v'; SECTOR_SIZE - 1 - 2 - 4 - 2]);
        let (mut log, ends) = log_of(&[first.clone(), set(b"b", b"old")]);
        assert_eq!(ends[0], SECTOR_SIZE);
        // Record 1 rots; the log restarts at 0 and a new record of the same
        // length lands on it, ending on the same boundary.
        log[10] ^= 1;
        let (store, valid) = rebuild(&log);
        assert!(store.is_empty());
        assert_eq!(valid, 0);
        let mut writer = LogWriter::new(&log, valid);
        let replacement = set(b"z", &vec![b'w'; SECTOR_SIZE - 1 - 2 - 4 - 2]);
        let (sector, bytes) = writer.append(&replacement);
        assert_eq!((sector, bytes.len()), (0, SECTOR_SIZE));
        log[..SECTOR_SIZE].copy_from_slice(&bytes);
        // The old record 2, intact on disk, no longer chains.
        let (store, valid) = rebuild(&log);
        assert_eq!(valid, SECTOR_SIZE);
        assert_eq!(store.len(), 1);
        assert!(store.get(b"b").is_none());
    }

    #[test]
    fn writes_are_sector_aligned_and_rewrite_the_tail() {
        let mut writer = LogWriter::new(&[], 0);
        assert!(writer.is_empty());
        let (sector, first) = writer.append(&set(b"a", b"1"));
        assert_eq!((sector, first.len()), (0, SECTOR_SIZE));
        assert!(first[9..].iter().all(|&byte| byte == 0));
        let big = set(b"b", &[b'x'; 1000]);
        let (sector, second) = writer.append(&big);
        assert_eq!(sector, 0);
        assert_eq!(&second[..9], &first[..9]);
        assert_eq!(second.len(), 2 * SECTOR_SIZE);
        let end = writer.len();
        assert_eq!(end, 9 + 2 + big.len() + 4);
        // The next write starts at the partial sector, rewritten whole.
        let (sector, third) = writer.append(&set(b"c", b"3"));
        assert_eq!(sector, 1);
        assert_eq!(&third[..end - SECTOR_SIZE], &second[SECTOR_SIZE..end]);
        assert_eq!(third.len(), 2 * SECTOR_SIZE);
        // A writer resumed from the disk continues identically.
        let mut disk = Disk::new(8);
        disk.write(0, &second);
        disk.write(1, &third);
        let (_, valid) = rebuild(&disk.0);
        assert_eq!(valid, writer.len());
        let mut resumed = LogWriter::new(&disk.0, valid);
        assert_eq!(resumed.append(b"D\x01a"), writer.append(b"D\x01a"));
    }

    /// Random commands through a connection, their log entries through a
    /// writer onto a simulated disk, with crashes that tear the last write
    /// at a sector: the disk always rebuilds to the live store, or to the
    /// store before the torn write.
    #[test]
    fn random_appends_rebuild_to_the_same_store() {
        const KEYS: &[&[u8]] = &[b"a", b"b", b"c", b"counter", b"", b"k\r\n"];
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut disk = Disk::new(4096);
        let mut store = Store::new();
        let mut writer = LogWriter::new(&[], 0);
        let mut connection = Connection::new();
        for step in 0..3000 {
            let key = KEYS[rng.below(KEYS.len())];
            let request = match rng.below(6) {
                0 | 1 => {
                    let value = vec![b'0' + rng.below(10) as u8; rng.below(1500)];
                    multibulk(&[b"SET", key, &value])
                }
                2 => multibulk(&[b"INCR", key]),
                3 => multibulk(&[b"DEL", key, KEYS[rng.below(KEYS.len())]]),
                4 => multibulk(&[b"SET", key, format!("{}", rng.below(100)).as_bytes()]),
                _ => multibulk(&[b"GET", key]),
            };
            connection.receive(&request);
            let outcome = connection.next_request(&store).unwrap();
            let Some(entry) = outcome.log else {
                continue;
            };
            assert!(store.apply_entry(&entry));
            let before = writer.len();
            let (sector, bytes) = writer.append(&entry);
            assert_eq!(bytes.len() % SECTOR_SIZE, 0);
            assert_eq!(sector as usize, before / SECTOR_SIZE);
            assert!(sector as usize * SECTOR_SIZE + bytes.len() >= writer.len());
            if rng.below(50) == 0 {
                // Crash during this write: only some sectors reach the disk.
                let sectors = bytes.len() / SECTOR_SIZE;
                let written = rng.below(sectors + 1);
                disk.write(sector, &bytes[..written * SECTOR_SIZE]);
                let (rebuilt, valid) = rebuild(&disk.0);
                if written == sectors {
                    assert!(rebuilt == store, "step {step}");
                    assert_eq!(valid, writer.len());
                } else {
                    assert_eq!(valid, before, "step {step}");
                    // Undo the change the torn write lost.
                    store = rebuilt.clone();
                }
                assert!(rebuilt == store);
                writer = LogWriter::new(&disk.0, valid);
            } else {
                disk.write(sector, &bytes);
            }
        }
        let (rebuilt, valid) = rebuild(&disk.0);
        assert!(rebuilt == store);
        assert_eq!(valid, writer.len());
        assert!(valid > 100 * SECTOR_SIZE);
    }
}
