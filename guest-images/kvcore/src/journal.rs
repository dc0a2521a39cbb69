//! The store's log on a block device, and its compaction.
//!
//! # Layout
//!
//! Sectors 0 and 1 are header slots; the rest is two equal regions. The
//! header (in the valid slot with the highest generation) names the
//! region that holds the log, the regions' size and the seed the log's
//! record checksums chain from. The log is [`crate::log`]'s records from
//! the start of its region.
//!
//! # Compaction
//!
//! As Redis rewrites its append-only file: once the log has grown to twice
//! its size after the last compaction (and at least an eighth of a region),
//! or to three quarters of its region, having grown by a sixteenth of a
//! region since the last compaction, the store's live data is written as
//! commands that recreate it into the other region, a chunk per step
//! between requests, while requests go on being logged in the current
//! region. Keys the compaction had already written and that change
//! meanwhile are written again at the end. The last step writes them,
//! flushes, writes the other header slot naming the new region with the
//! next generation, and flushes again: that write is the switch, and a
//! crash on either side of it leaves one complete log. Each compaction's
//! log has its own seed (see `seed`), so records of an unfinished one left
//! in a region are never taken for a later log's continuation.

use alloc::vec;
use alloc::vec::Vec;

use crate::db::Slot;
use crate::int;
use crate::kv::{Kv, Refusal};
use crate::log::{self, LogWriter, Read, SECTOR_SIZE};
use crate::value::Value;

/// What the journal needs of a block device. Requests complete before
/// they return; the guest waits for them with `sti; hlt`.
pub trait Disk {
    /// Its size in sectors of [`SECTOR_SIZE`] bytes.
    fn capacity(&self) -> u64;
    /// Reads whole sectors into `buf`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Writes whole sectors.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Makes the completed writes durable.
    fn flush(&mut self) -> Result<(), DiskError>;
}

/// A failed disk request, named for the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskError(pub &'static str);

/// Why the log cannot be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Fewer than [`MIN_SECTORS`] sectors.
    TooSmall,
    /// Neither header slot is valid and the disk is not blank.
    UnknownFormat,
    /// The header's regions do not fit on the disk.
    Layout,
    /// The store the log describes does not fit in memory.
    OutOfMemory,
    Disk(DiskError),
}

impl OpenError {
    pub fn message(self) -> &'static str {
        match self {
            Self::TooSmall => "the disk is too small (at least 64 sectors)",
            Self::UnknownFormat => "the disk holds no kvstore log and is not blank",
            Self::Layout => "the log's regions do not fit on the disk",
            Self::OutOfMemory => "the log's data does not fit in the guest's memory",
            Self::Disk(DiskError(name)) => name,
        }
    }
}

/// The smallest disk: two header slots and two regions of 31 sectors.
pub const MIN_SECTORS: u64 = 64;
const SLOTS: u64 = 2;
const MAGIC: &[u8; 8] = b"KVSTORE2";
/// Bytes read at a time while loading.
const LOAD_CHUNK: usize = 64 * 1024;
/// Bytes of commands a compaction step writes (one key may take more).
const STEP_BYTES: usize = 32 * 1024;
/// Elements per command when a compaction recreates a collection, as
/// Redis's `AOF_REWRITE_ITEMS_PER_CMD`.
const ITEMS_PER_COMMAND: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Header {
    generation: u64,
    region: u64,
    region_sectors: u64,
    seed: u64,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut sector = vec![0; SECTOR_SIZE];
        let mut fields = Vec::with_capacity(40);
        fields.extend_from_slice(MAGIC);
        for value in [self.generation, self.region, self.region_sectors, self.seed] {
            fields.extend_from_slice(&value.to_le_bytes());
        }
        let checksum = twox_hash::XxHash64::oneshot(0, &fields);
        fields.extend_from_slice(&checksum.to_le_bytes());
        sector[..fields.len()].copy_from_slice(&fields);
        sector
    }

    fn decode(sector: &[u8]) -> Option<Self> {
        let fields = sector.get(..40)?;
        let stored = u64::from_le_bytes(sector.get(40..48)?.try_into().ok()?);
        if fields.get(..8)? != MAGIC || twox_hash::XxHash64::oneshot(0, fields) != stored {
            return None;
        }
        let word = |index: usize| {
            let start = 8 + index * 8;
            u64::from_le_bytes(fields[start..start + 8].try_into().unwrap_or_default())
        };
        let header = Self {
            generation: word(0),
            region: word(1),
            region_sectors: word(2),
            seed: word(3),
        };
        (header.region < 2 && header.region_sectors > 0).then_some(header)
    }

    fn first_sector(&self) -> u64 {
        SLOTS + self.region * self.region_sectors
    }

    fn region_bytes(&self) -> usize {
        (self.region_sectors as usize).saturating_mul(SECTOR_SIZE)
    }
}

/// A compaction in progress.
struct Compaction {
    writer: LogWriter,
    header: Header,
    /// The next bucket to write (see [`Db::walk`]).
    cursor: u64,
    keys_done: bool,
    /// The time its entries record.
    now_ms: u64,
}

/// What INFO shows of the log.
#[derive(Clone, Copy, Default)]
pub struct JournalStatus {
    pub size: u64,
    pub base_size: u64,
    pub compacting: bool,
    pub compactions: u64,
    pub write_ok: bool,
    pub changes: u64,
    pub last_compaction_unix: u64,
}

pub struct Journal<D> {
    disk: D,
    header: Header,
    /// The slot holding `header`.
    slot: u64,
    writer: LogWriter,
    /// A write or flush failed: the records since are written again by
    /// the next commit.
    failed: bool,
    compaction: Option<Compaction>,
    /// The log's length after the last compaction, or at boot.
    base_size: usize,
    /// The length at which a compaction last failed (the live data did not
    /// fit), so that it is not retried at once.
    failed_compaction_at: Option<usize>,
    compactions: u64,
    changes: u64,
    last_compaction_unix: u64,
}

/// The seed of a new log: different for every compaction whose log could
/// differ from an unfinished earlier one's. Two compactions that start
/// from the same current log (its last checksum and length) write the
/// same records, so nothing of one can follow the other's; any change in
/// between changes the current log, and the time makes it unlikelier
/// still.
fn seed(chain: u64, len: usize, generation: u64, now_ms: u64) -> u64 {
    let mut words = [0u8; 24];
    words[..8].copy_from_slice(&(len as u64).to_le_bytes());
    words[8..16].copy_from_slice(&generation.to_le_bytes());
    words[16..].copy_from_slice(&now_ms.to_le_bytes());
    twox_hash::XxHash64::oneshot(chain, &words)
}

impl<D: Disk> Journal<D> {
    /// Opens the log on `disk` (a blank disk gets a new, empty one) and
    /// replays it into `kv`. `now_ms` seeds a new log; `memory_ok` is asked
    /// after each record whether the store still fits.
    pub fn open(
        mut disk: D,
        kv: &mut Kv,
        now_ms: u64,
        memory_ok: &mut dyn FnMut() -> bool,
    ) -> Result<Self, OpenError> {
        let capacity = disk.capacity();
        if capacity < MIN_SECTORS {
            return Err(OpenError::TooSmall);
        }
        let mut slots = vec![0; 3 * SECTOR_SIZE];
        disk.read(0, &mut slots).map_err(OpenError::Disk)?;
        let found = [0, 1]
            .into_iter()
            .filter_map(|slot| {
                let bytes = slots.get(slot * SECTOR_SIZE..(slot + 1) * SECTOR_SIZE)?;
                Some((slot as u64, Header::decode(bytes)?))
            })
            .max_by_key(|(_, header)| header.generation);
        let (slot, header) = match found {
            Some(found) => found,
            None if slots.iter().all(|&byte| byte == 0) => {
                let header = Header {
                    generation: 1,
                    region: 0,
                    region_sectors: (capacity - SLOTS) / 2,
                    seed: seed(0, 0, 1, now_ms),
                };
                disk.write(0, &header.encode()).map_err(OpenError::Disk)?;
                disk.flush().map_err(OpenError::Disk)?;
                (0, header)
            }
            None => return Err(OpenError::UnknownFormat),
        };
        if SLOTS + 2 * header.region_sectors > capacity {
            return Err(OpenError::Layout);
        }
        let writer = load(&mut disk, &header, kv, memory_ok)?;
        let base_size = writer.len();
        Ok(Self {
            disk,
            header,
            slot,
            writer,
            failed: false,
            compaction: None,
            base_size,
            failed_compaction_at: None,
            compactions: 0,
            changes: 0,
            last_compaction_unix: now_ms / 1000,
        })
    }

    pub fn status(&self) -> JournalStatus {
        JournalStatus {
            size: self.writer.len() as u64,
            base_size: self.base_size as u64,
            compacting: self.compaction.is_some(),
            compactions: self.compactions,
            write_ok: !self.failed,
            changes: self.changes,
            last_compaction_unix: self.last_compaction_unix,
        }
    }

    /// Whether the last write or flush failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn fits(&self, entry_bytes: usize) -> bool {
        self.writer.len() + log::record_len(entry_bytes) <= self.header.region_bytes()
    }

    /// Whether an entry of `bytes` can be logged now: a failed disk is
    /// tried again first.
    pub fn reserve(&mut self, bytes: usize) -> Result<(), Refusal> {
        if self.failed && !self.commit() {
            return Err(Refusal::DiskFailed);
        }
        if self.fits(bytes) {
            Ok(())
        } else {
            Err(Refusal::DiskFull)
        }
    }

    /// Appends an entry, to be written by the next [`Journal::commit`].
    pub fn stage(&mut self, entry: &[u8]) {
        self.writer.append(entry);
        self.changes += 1;
    }

    /// Whether entries wait for [`Journal::commit`].
    pub fn has_staged(&self) -> bool {
        self.writer.has_unwritten()
    }

    /// The bytes the next [`Journal::commit`] writes.
    pub fn staged_bytes(&self) -> usize {
        self.writer.unwritten_len()
    }

    /// Writes the staged entries and flushes: whether they are durable.
    /// After a failure they stay staged and the journal is
    /// [`failed`](Journal::failed) until a commit succeeds.
    pub fn commit(&mut self) -> bool {
        if !self.writer.has_unwritten() && !self.failed {
            return true;
        }
        let (first, bytes) = self.writer.unwritten();
        let sector = self.header.first_sector() + first as u64;
        let done = self.disk.write(sector, &bytes).is_ok() && self.disk.flush().is_ok();
        self.failed = !done;
        if done {
            self.writer.written();
        }
        done
    }

    /// Makes room for an entry of `bytes` before a write command runs, if
    /// compaction can: commits what is staged, then finishes the running
    /// compaction, or runs one if the log holds at least that much dead
    /// data. This blocks the client for a whole compaction, which the
    /// automatic ones (see [`Journal::should_compact`]) make rare.
    pub fn make_room(&mut self, bytes: usize, kv: &mut Kv, now_ms: &mut dyn FnMut() -> u64) {
        if self.fits(bytes) || self.failed || !self.commit() {
            return;
        }
        let dead = self.writer.len().saturating_sub(self.base_size);
        if self.compaction.is_none() && dead >= log::record_len(bytes) {
            self.start_compaction(kv, now_ms());
        }
        while self.compaction.is_some() {
            self.compact_step(kv);
        }
    }

    /// Whether a compaction should start: see the module's comment.
    pub fn should_compact(&self) -> bool {
        let len = self.writer.len();
        let region = self.header.region_bytes();
        let doubled = len >= (region / 8).max(2 * self.base_size);
        let crowded = len >= region / 4 * 3;
        // Some dead data at least, and not just after a failed attempt.
        let grown = len >= self.base_size + region / 16;
        let retry = self
            .failed_compaction_at
            .is_none_or(|at| len >= at + region / 8);
        self.compaction.is_none() && !self.failed && (doubled || crowded) && grown && retry
    }

    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Starts a compaction of `kv`'s data as of `now_ms`.
    pub fn start_compaction(&mut self, kv: &mut Kv, now_ms: u64) {
        let generation = self.header.generation + 1;
        let header = Header {
            generation,
            region: 1 - self.header.region,
            region_sectors: self.header.region_sectors,
            seed: seed(self.writer.chain(), self.writer.len(), generation, now_ms),
        };
        kv.db.start_tracking();
        self.compaction = Some(Compaction {
            writer: LogWriter::new(header.seed),
            header,
            cursor: 0,
            keys_done: false,
            now_ms,
        });
    }

    /// Does one step of the running compaction: at most about
    /// [`STEP_BYTES`] of the store written, or the switch. Call it only
    /// with nothing staged (after a commit).
    pub fn compact_step(&mut self, kv: &mut Kv) {
        let Some(mut compaction) = self.compaction.take() else {
            return;
        };
        let db = &mut kv.db;
        if db.tracker().is_none_or(|tracker| tracker.flushed) {
            // FLUSHALL made the image void; the next one starts afresh.
            db.stop_tracking();
            return;
        }
        let mut commands = Vec::new();
        let finishing = compaction.keys_done;
        if finishing {
            let changed = db
                .tracker()
                .map(|tracker| core::mem::take(&mut tracker.changed))
                .unwrap_or_default();
            for key in changed {
                commands.push(vec![b"DEL".to_vec(), key.clone()]);
                if let Some(slot) = db.slot(&key) {
                    recreate(slot, compaction.now_ms, &mut commands);
                }
            }
        } else {
            let mut bytes = 0;
            let now = compaction.now_ms;
            let next = db.walk(compaction.cursor, |slot| {
                let before = commands.len();
                recreate(slot, now, &mut commands);
                bytes += commands[before..]
                    .iter()
                    .flatten()
                    .map(Vec::len)
                    .sum::<usize>();
                bytes >= STEP_BYTES
            });
            compaction.cursor = next;
            compaction.keys_done = next == 0;
            if let Some(tracker) = db.tracker() {
                tracker.written_below = if next == 0 { u64::MAX } else { next };
            }
        }
        if !commands.is_empty() {
            let slices: Vec<&[Vec<u8>]> = commands.iter().map(Vec::as_slice).collect();
            let mut entry = log::encode_entry(&slices);
            log::set_entry_time(&mut entry, compaction.now_ms);
            compaction.writer.append(&entry);
        }
        let fits = compaction.writer.len() <= compaction.header.region_bytes();
        if !fits || !self.write_new(&mut compaction, finishing) {
            if !fits {
                self.failed_compaction_at = Some(self.writer.len());
            }
            kv.db.stop_tracking();
            return;
        }
        if !finishing {
            self.compaction = Some(compaction);
            return;
        }
        kv.db.stop_tracking();
        self.header = compaction.header;
        self.slot = 1 - self.slot;
        self.writer = compaction.writer;
        self.base_size = self.writer.len();
        self.failed_compaction_at = None;
        self.compactions += 1;
        self.changes = 0;
        self.last_compaction_unix = compaction.now_ms / 1000;
    }

    /// Writes the compaction's new records; when `switch`, flushes them and
    /// writes and flushes the header naming them.
    fn write_new(&mut self, compaction: &mut Compaction, switch: bool) -> bool {
        if compaction.writer.has_unwritten() {
            let (first, bytes) = compaction.writer.unwritten();
            let sector = compaction.header.first_sector() + first as u64;
            if self.disk.write(sector, &bytes).is_err() {
                return false;
            }
            compaction.writer.written();
        }
        if !switch {
            return true;
        }
        self.disk.flush().is_ok()
            && self
                .disk
                .write(1 - self.slot, &compaction.header.encode())
                .is_ok()
            && self.disk.flush().is_ok()
    }
}

/// The commands that recreate `slot`'s key, unless it expired by `now`.
fn recreate(slot: &Slot, now: u64, commands: &mut Vec<Vec<Vec<u8>>>) {
    if slot.expires.is_some_and(|deadline| deadline <= now) {
        return;
    }
    let key = &slot.key;
    let mut deadline = Vec::new();
    if let Some(at) = slot.expires {
        int::push_u64(&mut deadline, at);
    }
    match &slot.value {
        Value::Str(value) => {
            let mut command = vec![b"SET".to_vec(), key.clone(), value.clone()];
            if slot.expires.is_some() {
                command.extend([b"PXAT".to_vec(), deadline]);
            }
            commands.push(command);
            return;
        }
        Value::List(list) => chunked(
            b"RPUSH",
            key,
            list.iter().map(|item| [item.clone()]),
            commands,
        ),
        Value::Set(set) => chunked(
            b"SADD",
            key,
            set.iter().map(|item| [item.clone()]),
            commands,
        ),
        Value::Hash(hash) => chunked(
            b"HSET",
            key,
            hash.iter()
                .map(|(field, value)| [field.clone(), value.clone()]),
            commands,
        ),
        Value::ZSet(zset) => chunked(
            b"ZADD",
            key,
            zset.iter().map(|(member, score)| {
                let mut text = Vec::new();
                score.push_text(&mut text);
                [text, member.to_vec()]
            }),
            commands,
        ),
    }
    if slot.expires.is_some() {
        commands.push(vec![b"PEXPIREAT".to_vec(), key.clone(), deadline]);
    }
}

/// `name key items...` commands of at most [`ITEMS_PER_COMMAND`] items.
fn chunked<const N: usize>(
    name: &[u8],
    key: &[u8],
    items: impl Iterator<Item = [Vec<u8>; N]>,
    commands: &mut Vec<Vec<Vec<u8>>>,
) {
    let mut command: Vec<Vec<u8>> = Vec::new();
    for item in items {
        if command.is_empty() {
            command = vec![name.to_vec(), key.to_vec()];
        }
        command.extend(item);
        if command.len() >= 2 + ITEMS_PER_COMMAND * N {
            commands.push(core::mem::take(&mut command));
        }
    }
    if !command.is_empty() {
        commands.push(command);
    }
}

/// Replays the log in `header`'s region into `kv`: a writer continuing
/// it.
fn load(
    disk: &mut impl Disk,
    header: &Header,
    kv: &mut Kv,
    memory_ok: &mut dyn FnMut() -> bool,
) -> Result<LogWriter, OpenError> {
    let region = header.region_bytes();
    // `buffer` holds the region's bytes from `buffer_start` to `read`.
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_start = 0;
    let mut read = 0;
    let mut valid = 0;
    let mut chain = header.seed;
    let mut now = 0;
    loop {
        let at = valid - buffer_start;
        match log::read_record(buffer.get(at..).unwrap_or_default(), chain) {
            Read::Record {
                entry,
                checksum,
                len,
            } => {
                let Some(time) = kv.replay(entry, now) else {
                    break;
                };
                now = time;
                valid += len;
                chain = checksum;
                if !memory_ok() {
                    return Err(OpenError::OutOfMemory);
                }
            }
            Read::Short if read < region => {
                // Keep from the sector `valid` is in: the writer rewrites it.
                let keep = valid / SECTOR_SIZE * SECTOR_SIZE;
                buffer.drain(..keep - buffer_start);
                buffer_start = keep;
                let count = LOAD_CHUNK.min(region - read);
                let start = buffer.len();
                buffer.resize(start + count, 0);
                let sector = header.first_sector() + (read / SECTOR_SIZE) as u64;
                disk.read(sector, &mut buffer[start..])
                    .map_err(OpenError::Disk)?;
                read += count;
            }
            Read::Short | Read::End => break,
        }
    }
    let tail_start = valid / SECTOR_SIZE * SECTOR_SIZE;
    let tail = buffer
        .get(tail_start - buffer_start..valid - buffer_start)
        .unwrap_or_default();
    Ok(LogWriter::resume(valid, tail, chain))
}

#[cfg(test)]
mod tests;
