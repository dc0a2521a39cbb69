//! The journal's disk: the virtio block device, in requests the VMM takes.

use kvcore::journal::{Disk, DiskError};
use kvcore::log::SECTOR_SIZE;
use virtio::blk::{BlockDevice, BlockError};

/// The most sectors one request moves: half the VMM's 1 MiB limit.
const SECTORS_PER_REQUEST: usize = 1024;

pub struct BlockDisk(pub BlockDevice);

fn error(error: BlockError) -> DiskError {
    DiskError(error.name())
}

impl Disk for BlockDisk {
    fn capacity(&self) -> u64 {
        self.0.capacity()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let (sectors, _) = buf.as_chunks_mut::<SECTOR_SIZE>();
        for (index, piece) in sectors.chunks_mut(SECTORS_PER_REQUEST).enumerate() {
            let first = sector + (index * SECTORS_PER_REQUEST) as u64;
            self.0.read(first, piece).map_err(error)?;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let (sectors, _) = data.as_chunks::<SECTOR_SIZE>();
        for (index, piece) in sectors.chunks(SECTORS_PER_REQUEST).enumerate() {
            let first = sector + (index * SECTORS_PER_REQUEST) as u64;
            self.0.write(first, piece).map_err(error)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.0.flush().map_err(error)
    }
}
