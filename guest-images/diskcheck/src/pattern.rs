//! `mode=pattern` and `mode=verify`.
//!
//! The pattern: 64-bit word k (0..64) of sector s holds, little-endian,
//! `seed ^ (s << 8) ^ k`, so a host test can write or check it too.

use rt::BootInfo;
use rt::print::{print, print_dec};
use virtio::blk::{BlockDevice, Sector};

use crate::{EXIT_MISMATCH, buffer, chunks, failed, write_failed};

/// Writes the pattern, flushes, reads it back and checks it.
pub fn write_and_verify(disk: &mut BlockDevice, boot: &BootInfo) -> Result<(), u8> {
    let (seed, sectors) = params(boot);
    let mut buffer = buffer(sectors);
    for (first, count) in chunks(sectors) {
        let chunk = &mut buffer[..count];
        for (sector, data) in (first..).zip(chunk.iter_mut()) {
            fill(data, seed, sector);
        }
        disk.write(first, chunk)
            .map_err(|error| write_failed(disk, error))?;
    }
    disk.flush().map_err(|error| failed("flush", error))?;
    check(disk, seed, sectors)?;
    print("diskcheck: pattern written and verified\n");
    Ok(())
}

/// Checks that the disk holds the pattern.
pub fn verify(disk: &mut BlockDevice, boot: &BootInfo) -> Result<(), u8> {
    let (seed, sectors) = params(boot);
    check(disk, seed, sectors)?;
    print("diskcheck: pattern verified\n");
    Ok(())
}

/// `seed=` and `sectors=`.
fn params(boot: &BootInfo) -> (u64, u64) {
    (boot.number("seed", 1), boot.number("sectors", 8))
}

/// Reads sectors 0..`sectors` and reports the first that differs.
fn check(disk: &mut BlockDevice, seed: u64, sectors: u64) -> Result<(), u8> {
    let mut buffer = buffer(sectors);
    for (first, count) in chunks(sectors) {
        let chunk = &mut buffer[..count];
        disk.read(first, chunk)
            .map_err(|error| failed("read", error))?;
        let bad = (first..)
            .zip(chunk.iter())
            .find(|(sector, data)| !holds(data, seed, *sector));
        if let Some((sector, _)) = bad {
            print("diskcheck: pattern mismatch at sector ");
            print_dec(sector);
            print("\n");
            return Err(EXIT_MISMATCH);
        }
    }
    Ok(())
}

fn word(seed: u64, sector: u64, index: usize) -> u64 {
    seed ^ (sector << 8) ^ index as u64
}

fn fill(data: &mut Sector, seed: u64, sector: u64) {
    let (words, _) = data.as_chunks_mut::<8>();
    for (index, bytes) in words.iter_mut().enumerate() {
        *bytes = word(seed, sector, index).to_le_bytes();
    }
}

fn holds(data: &Sector, seed: u64, sector: u64) -> bool {
    let (words, _) = data.as_chunks::<8>();
    words
        .iter()
        .enumerate()
        .all(|(index, bytes)| u64::from_le_bytes(*bytes) == word(seed, sector, index))
}
