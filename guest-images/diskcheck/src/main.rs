//! Test guest for the virtio block device, driven by its command line.
//!
//! It always first prints `diskcheck: capacity=<sectors> ro=<0|1> id=<id>`
//! (the GET_ID string without its trailing NULs), then runs `mode=`:
//!
//! - (none): exits 0.
//! - `pattern seed=S sectors=N` (defaults 1 and 8): writes the pattern of
//!   [`pattern`] to sectors 0..N, flushes, reads it back and checks it:
//!   `diskcheck: pattern written and verified`, exit 0.
//! - `verify seed=S sectors=N`: checks the pattern: `diskcheck: pattern
//!   verified`, exit 0, or `diskcheck: pattern mismatch at sector K`, exit 1.
//! - `seq count=N` (default 10): for each i in 0..N writes record i
//!   ([`seq`]) to sector i, flushes, prints `seq <i>` (record i is then
//!   durable) and waits for the next tick of a 100 Hz timer; exit 0.
//! - `seqcheck`: counts the valid records from sector 0 on, stopping at
//!   the first sector that does not hold the record of its number:
//!   `seqcheck: <k> records`, exit 0.
//!
//! A failed request prints `diskcheck: <op> failed: <error>` (op: setup,
//! get id, read, write, flush; error e.g. `io error`, `unsupported`) and
//! exits 2, or 3 for a failed write on a device that announced itself
//! read-only. Without a block device: `diskcheck: no block device`, exit 4.
#![no_std]
#![no_main]

extern crate alloc;

mod pattern;
mod seq;

use rt::print::{print, print_bytes, print_dec};
use rt::{BootInfo, cmdline, virtio_mmio};
use virtio::blk::{BlockDevice, BlockError, ID_LEN, SECTOR_SIZE, Sector};

rt::entry!(main);

const EXIT_MISMATCH: u8 = 1;
const EXIT_IO_ERROR: u8 = 2;
const EXIT_READ_ONLY: u8 = 3;
const EXIT_NO_DEVICE: u8 = 4;

/// Sectors per request: bounds the buffer, not the test's size.
const CHUNK_SECTORS: usize = 64;

fn main(boot: &BootInfo) -> u8 {
    virtio::heap::init(boot);
    let Some(device) = virtio_mmio::find(boot.cmdline, virtio_mmio::DEVICE_ID_BLOCK) else {
        print("diskcheck: no block device\n");
        return EXIT_NO_DEVICE;
    };
    let mut disk = match BlockDevice::new(device) {
        Ok(disk) => disk,
        Err(error) => return failed("setup", error),
    };
    let id = match disk.id() {
        Ok(id) => id,
        Err(error) => return failed("get id", error),
    };
    print_info(&disk, &id);

    let result = match cmdline::param(boot.cmdline, b"mode") {
        None => Ok(()),
        Some(b"pattern") => pattern::write_and_verify(&mut disk, boot),
        Some(b"verify") => pattern::verify(&mut disk, boot),
        Some(b"seq") => seq::write(&mut disk, boot),
        Some(b"seqcheck") => seq::check(&mut disk),
        Some(_) => rt::fatal("diskcheck: mode must be pattern, verify, seq or seqcheck"),
    };
    result.err().unwrap_or(0)
}

fn print_info(disk: &BlockDevice, id: &[u8; ID_LEN]) {
    let id_len = id
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    print("diskcheck: capacity=");
    print_dec(disk.capacity());
    print(" ro=");
    print_dec(u64::from(disk.read_only()));
    print(" id=");
    print_bytes(&id[..id_len]);
    print("\n");
}

/// Reports a failed request; returns the exit status.
fn failed(operation: &str, error: BlockError) -> u8 {
    print("diskcheck: ");
    print(operation);
    print(" failed: ");
    print(error.name());
    print("\n");
    EXIT_IO_ERROR
}

/// Reports a failed write, which a read-only device must refuse.
fn write_failed(disk: &BlockDevice, error: BlockError) -> u8 {
    let status = failed("write", error);
    if disk.read_only() {
        EXIT_READ_ONLY
    } else {
        status
    }
}

/// A zeroed buffer for up to `sectors` sectors, at most a chunk.
fn buffer(sectors: u64) -> alloc::vec::Vec<Sector> {
    let len = usize::try_from(sectors).map_or(CHUNK_SECTORS, |n| n.min(CHUNK_SECTORS));
    alloc::vec![[0; SECTOR_SIZE]; len]
}

/// Splits sectors 0..`sectors` into requests: (first sector, count).
fn chunks(sectors: u64) -> impl Iterator<Item = (u64, usize)> {
    let chunk = CHUNK_SECTORS as u64;
    (0..sectors.div_ceil(chunk)).map(move |n| {
        let first = n * chunk;
        (first, (sectors - first).min(chunk) as usize)
    })
}
