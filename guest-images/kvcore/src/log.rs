//! The write-ahead log's entries and records.
//!
//! An *entry* is what one request changed, as the commands that replay
//! it: the time they ran at (Unix milliseconds, 8 bytes little-endian, 0
//! when they did not read the clock), a varint count of commands, and per
//! command a varint count of arguments and each argument as a varint
//! length and its bytes. A write command is logged as the client sent it
//! (a relative EXPIRE replays to the same deadline since the time is
//! recorded), EXEC as the write commands it ran, and a compaction writes
//! the commands that recreate each key.
//!
//! A *record* frames an entry on the disk: the entry's length as a varint,
//! the entry, and an XXH64 (little-endian) of the length and entry seeded
//! with the previous record's checksum (the log's seed for the first).
//! A record is valid when it is complete, its length is neither zero nor
//! over [`MAX_ENTRY`], and its checksum matches: zeros, as on a fresh
//! disk, are no record, a write torn anywhere leaves an invalid record, and
//! a record left from an older log (another seed) never chains on.

use alloc::vec::Vec;

use crate::int;

/// The disk's sector size: the log is written in whole sectors.
pub const SECTOR_SIZE: usize = 512;

/// The longest entry: a transaction's commands and a little framing. A
/// longer length is garbage and ends the log.
pub const MAX_ENTRY: usize = crate::kv::MAX_TRANSACTION + 64 * 1024;

/// The bytes of a record after its entry.
const CHECKSUM_LEN: usize = 8;
/// The bytes of the time at the start of an entry.
const TIME_LEN: usize = 8;

/// An entry for `commands`, its time left 0 for [`set_entry_time`]. Public
/// so that tests can lay out a store's log as kvstore writes it.
pub fn encode_entry(commands: &[&[Vec<u8>]]) -> Vec<u8> {
    let size: usize = commands
        .iter()
        .flat_map(|args| args.iter())
        .map(|arg| arg.len() + 10)
        .sum();
    let mut entry = Vec::with_capacity(TIME_LEN + 10 + size);
    entry.extend_from_slice(&0u64.to_le_bytes());
    int::push_varint(&mut entry, commands.len() as u64);
    for args in commands {
        int::push_varint(&mut entry, args.len() as u64);
        for arg in *args {
            int::push_varint(&mut entry, arg.len() as u64);
            entry.extend_from_slice(arg);
        }
    }
    entry
}

pub(crate) fn set_entry_time(entry: &mut [u8], now_ms: u64) {
    if let Some(time) = entry.get_mut(..TIME_LEN) {
        time.copy_from_slice(&now_ms.to_le_bytes());
    }
}

/// An entry's time and commands; `None` if it is malformed.
pub(crate) fn decode_entry(entry: &[u8]) -> Option<(u64, Vec<Vec<Vec<u8>>>)> {
    let now = u64::from_le_bytes(entry.get(..TIME_LEN)?.try_into().ok()?);
    let mut rest = entry.get(TIME_LEN..)?;
    let count = take_varint(&mut rest)?;
    let mut commands = Vec::new();
    for _ in 0..count {
        let argc = take_varint(&mut rest)?;
        if argc == 0 {
            return None;
        }
        let mut args = Vec::new();
        for _ in 0..argc {
            let len = usize::try_from(take_varint(&mut rest)?).ok()?;
            let (arg, after) = rest.split_at_checked(len)?;
            args.push(arg.to_vec());
            rest = after;
        }
        commands.push(args);
    }
    rest.is_empty().then_some((now, commands))
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let (value, len) = int::read_varint(input)?;
    *input = input.get(len..)?;
    Some(value)
}

/// The bytes a record of an entry of `len` bytes takes.
pub(crate) fn record_len(len: usize) -> usize {
    let mut varint = Vec::new();
    int::push_varint(&mut varint, len as u64);
    varint.len() + len + CHECKSUM_LEN
}

/// Appends the record of `entry` to `out`, chained from `chain`; returns
/// its checksum, the next record's chain.
pub(crate) fn push_record(out: &mut Vec<u8>, entry: &[u8], chain: u64) -> u64 {
    let start = out.len();
    int::push_varint(out, entry.len() as u64);
    out.extend_from_slice(entry);
    let checksum = twox_hash::XxHash64::oneshot(chain, out.get(start..).unwrap_or_default());
    out.extend_from_slice(&checksum.to_le_bytes());
    checksum
}

/// What is at the start of a log's bytes.
pub(crate) enum Read<'a> {
    /// A valid record: its entry, checksum and length.
    Record {
        entry: &'a [u8],
        checksum: u64,
        len: usize,
    },
    /// The bytes end inside a record that may be valid: read more.
    Short,
    /// No valid record starts here: the log ends.
    End,
}

/// Reads the record at the start of `log`, chained from `chain`.
pub(crate) fn read_record(log: &[u8], chain: u64) -> Read<'_> {
    let Some((len, varint_len)) = int::read_varint(log) else {
        // A varint cut short may still complete; ten bytes never do.
        return if log.len() < 10 && log.iter().all(|byte| byte & 0x80 != 0) {
            Read::Short
        } else {
            Read::End
        };
    };
    let Some(len) = usize::try_from(len)
        .ok()
        .filter(|&len| len > 0 && len <= MAX_ENTRY)
    else {
        return Read::End;
    };
    let end = varint_len + len;
    let Some(stored) = log.get(end..end + CHECKSUM_LEN) else {
        return Read::Short;
    };
    let stored = u64::from_le_bytes(stored.try_into().unwrap_or_default());
    let framed = log.get(..end).unwrap_or_default();
    if twox_hash::XxHash64::oneshot(chain, framed) != stored {
        return Read::End;
    }
    Read::Record {
        entry: log.get(varint_len..end).unwrap_or_default(),
        checksum: stored,
        len: end + CHECKSUM_LEN,
    }
}

/// Appends records to one log region, sector by sector.
///
/// Records accumulate in memory until [`LogWriter::unwritten`] is written
/// (one write of whole sectors: the partly written last sector again, then
/// the new records, zero-padded) and [`LogWriter::written`] is called.
#[derive(Clone)]
pub(crate) struct LogWriter {
    /// The log's length in bytes, written or not.
    len: usize,
    /// The log's bytes from sector `first_unwritten` to `len`.
    unwritten: Vec<u8>,
    first_unwritten: usize,
    /// The last record's checksum.
    chain: u64,
    /// Records were appended since the last write.
    pending: bool,
}

impl LogWriter {
    /// A writer of a new log with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            len: 0,
            unwritten: Vec::new(),
            first_unwritten: 0,
            chain: seed,
            pending: false,
        }
    }

    /// A writer continuing a log of `len` bytes whose last sector starts
    /// with `tail` (`len % SECTOR_SIZE` bytes) and whose last checksum is
    /// `chain`.
    pub(crate) fn resume(len: usize, tail: &[u8], chain: u64) -> Self {
        Self {
            len,
            unwritten: tail.to_vec(),
            first_unwritten: len / SECTOR_SIZE,
            chain,
            pending: false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The last record's checksum (the seed while there is none).
    pub(crate) fn chain(&self) -> u64 {
        self.chain
    }

    /// Whether records wait to be written.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.pending
    }

    /// The bytes the next write takes (before padding).
    pub(crate) fn unwritten_len(&self) -> usize {
        self.unwritten.len()
    }

    pub(crate) fn append(&mut self, entry: &[u8]) {
        self.chain = push_record(&mut self.unwritten, entry, self.chain);
        self.len = self.first_unwritten * SECTOR_SIZE + self.unwritten.len();
        self.pending = true;
    }

    /// The first sector to write and the whole sectors to write there.
    pub(crate) fn unwritten(&self) -> (usize, Vec<u8>) {
        let mut bytes = self.unwritten.clone();
        bytes.resize(bytes.len().next_multiple_of(SECTOR_SIZE), 0);
        (self.first_unwritten, bytes)
    }

    /// The unwritten bytes reached the disk: keep only the partial last
    /// sector, to rewrite whole with the next records.
    pub(crate) fn written(&mut self) {
        let whole = self.unwritten.len() / SECTOR_SIZE * SECTOR_SIZE;
        self.unwritten.drain(..whole);
        self.first_unwritten += whole / SECTOR_SIZE;
        self.pending = false;
    }
}
