//! The store's log on the block device (kvcore's `log` format, from sector
//! 0): read back at boot, appended to, written and flushed before a change
//! is acknowledged.

use alloc::vec::Vec;

use kvcore::Store;
use kvcore::log::{self, LogWriter, SECTOR_SIZE};
use rt::print::print;
use virtio::blk::{BlockDevice, BlockError};

/// Sectors per read while loading: bounds the memory the device writes,
/// whatever the disk's size.
const CHUNK_SECTORS: usize = 64;
/// Bytes of a record after its entry: the CRC.
const CRC_LEN: usize = 4;
/// The longest entry the loader follows. An entry is no longer than the
/// request that made it plus a few bytes (INCR's value), and requests are
/// at most `MAX_REQUEST`, so a longer one is garbage: the log ends there.
const MAX_ENTRY: u64 = 2 * kvcore::MAX_REQUEST as u64;

/// Why a change was not made durable.
#[derive(Clone, Copy)]
pub enum AppendError {
    /// The log reached the end of the disk.
    Full,
    /// Writing or flushing failed.
    Disk(BlockError),
}

impl AppendError {
    /// The reply the client gets instead of the command's.
    pub fn reply(self) -> &'static [u8] {
        match self {
            Self::Full => b"-ERR disk full\r\n",
            Self::Disk(_) => b"-ERR disk write failed\r\n",
        }
    }
}

pub struct Journal {
    disk: BlockDevice,
    writer: LogWriter,
    /// Whether "log full" was printed; once full, a log stays so.
    reported_full: bool,
}

impl Journal {
    /// Reads the log from `disk` and rebuilds the store it describes.
    pub fn open(mut disk: BlockDevice) -> Result<(Self, Store), BlockError> {
        let bytes = read_log(&mut disk)?;
        let (store, valid) = log::rebuild(&bytes);
        let writer = LogWriter::new(&bytes, valid);
        let journal = Self {
            disk,
            writer,
            reported_full: false,
        };
        Ok((journal, store))
    }

    /// Appends a command's log entry and makes it durable (write, then
    /// FLUSH). On failure nothing changes: the writer goes back to where it
    /// was (so the next record overwrites whatever part of this one reached
    /// the disk) and the caller, which applies an entry only once it is
    /// durable, leaves the store as it was. A refusal costs no disk access
    /// when the record does not fit, and one failed request otherwise.
    pub fn append(&mut self, entry: &[u8]) -> Result<(), AppendError> {
        let before = self.writer.clone();
        let result = self.write(entry);
        if let Err(error) = result {
            self.writer = before;
            self.report(error);
        }
        result
    }

    fn write(&mut self, entry: &[u8]) -> Result<(), AppendError> {
        let (first, bytes) = self.writer.append(entry);
        let (sectors, _) = bytes.as_chunks::<SECTOR_SIZE>();
        let end = first.saturating_add(sectors.len() as u64);
        if end > self.disk.capacity() {
            return Err(AppendError::Full);
        }
        self.disk.write(first, sectors).map_err(AppendError::Disk)?;
        self.disk.flush().map_err(AppendError::Disk)
    }

    fn report(&mut self, error: AppendError) {
        match error {
            AppendError::Full if self.reported_full => {}
            AppendError::Full => {
                self.reported_full = true;
                print("kvstore: log full, refusing writes that do not fit\n");
            }
            AppendError::Disk(error) => {
                print("kvstore: disk write failed: ");
                print(error.name());
                print("\n");
            }
        }
    }
}

/// Reads the disk from sector 0, a chunk at a time, as far as the records'
/// framing goes (without checking CRCs: `log::rebuild` does), so that a
/// large disk with a short log costs a short read.
fn read_log(disk: &mut BlockDevice) -> Result<Vec<u8>, BlockError> {
    let mut bytes = Vec::new();
    let mut next_record = 0;
    loop {
        match frame(&bytes, next_record) {
            Framing::Record(end) => next_record = end,
            Framing::End => return Ok(bytes),
            Framing::Incomplete => {
                let read = (bytes.len() / SECTOR_SIZE) as u64;
                let count = disk
                    .capacity()
                    .saturating_sub(read)
                    .min(CHUNK_SECTORS as u64);
                if count == 0 {
                    return Ok(bytes);
                }
                let start = bytes.len();
                bytes.resize(start + count as usize * SECTOR_SIZE, 0);
                let (sectors, _) = bytes
                    .get_mut(start..)
                    .unwrap_or_default()
                    .as_chunks_mut::<SECTOR_SIZE>();
                disk.read(read, sectors)?;
            }
        }
    }
}

enum Framing {
    /// A record's framing ends at this offset.
    Record(usize),
    /// The bytes so far end inside the record's framing.
    Incomplete,
    /// No record starts here: a zero or overlong length.
    End,
}

/// The framing of the record at `start` of `bytes`: its entry's length as
/// an unsigned LEB128 varint, the entry, a CRC.
fn frame(bytes: &[u8], start: usize) -> Framing {
    let mut len = 0u64;
    let mut offset = start;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = bytes.get(offset) else {
            return Framing::Incomplete;
        };
        offset += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if len > MAX_ENTRY {
            return Framing::End;
        }
        if byte & 0x80 == 0 {
            if len == 0 {
                return Framing::End;
            }
            let end = offset + len as usize + CRC_LEN;
            return if end <= bytes.len() {
                Framing::Record(end)
            } else {
                Framing::Incomplete
            };
        }
    }
    Framing::End
}
