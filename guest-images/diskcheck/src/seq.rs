//! `mode=seq` and `mode=seqcheck`: numbered records, one per sector.
//!
//! Record i, in sector i: the magic `FTVM-SEQ` (8 bytes), i as a
//! little-endian u64, i in decimal followed by `\n`, then zeros.

use rt::print::{print, print_dec};
use rt::{BootInfo, cpu, pit};
use virtio::blk::{BlockDevice, SECTOR_SIZE, Sector};

use crate::{failed, write_failed};

const MAGIC: [u8; 8] = *b"FTVM-SEQ";
/// Timer rate: a record per tick.
const TICK_HZ: u32 = 100;

/// Writes and flushes records 0..`count=`, printing `seq <i>` once record
/// i is durable, one record per timer tick.
pub fn write(disk: &mut BlockDevice, boot: &BootInfo) -> Result<(), u8> {
    let count = boot.number("count", 10);
    pit::start_ticks(TICK_HZ);
    for i in 0..count {
        if i > 0 {
            let start = pit::ticks();
            cpu::wait_until(|| pit::ticks() > start);
        }
        disk.write(i, &[record(i)])
            .map_err(|error| write_failed(disk, error))?;
        disk.flush().map_err(|error| failed("flush", error))?;
        print("seq ");
        print_dec(i);
        print("\n");
    }
    Ok(())
}

/// Prints how many consecutive valid records the disk holds from sector 0.
pub fn check(disk: &mut BlockDevice) -> Result<(), u8> {
    let mut records = 0;
    let mut sector = [[0; SECTOR_SIZE]];
    while records < disk.capacity() {
        disk.read(records, &mut sector)
            .map_err(|error| failed("read", error))?;
        if sector[0] != record(records) {
            break;
        }
        records += 1;
    }
    print("seqcheck: ");
    print_dec(records);
    print(" records\n");
    Ok(())
}

fn record(i: u64) -> Sector {
    let mut data = [0; SECTOR_SIZE];
    let (words, rest) = data.split_at_mut(16);
    words[..8].copy_from_slice(&MAGIC);
    words[8..].copy_from_slice(&i.to_le_bytes());
    let mut digits = [0; 20];
    let text = rt::print::decimal(i, &mut digits);
    for (byte, &digit) in rest.iter_mut().zip(text.iter().chain(b"\n")) {
        *byte = digit;
    }
    data
}
