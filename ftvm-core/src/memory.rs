//! Guest RAM as the VMM sees it: a vm-memory mapping whose regions carry a
//! dirty bitmap of the pages the VMM itself writes.
//!
//! KVM's dirty log sees only what the guest writes. Everything the VMM
//! writes into guest memory goes through vm-memory (`write_slice`,
//! `write_obj`, virtio-queue's used-ring updates), which marks the page in
//! the region's [`AtomicBitmap`]: the virtio devices' used rings and status
//! bytes, disk-read data and GET_ID answers, received frames. Live transfer
//! and incremental checkpoints read both logs.

use vm_memory::bitmap::AtomicBitmap;
use vm_memory::mmap::MmapRegion;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Guest RAM, tracking the pages the VMM writes.
pub type GuestRam = GuestMemoryMmap<AtomicBitmap>;

/// The page size of guest memory, of KVM's dirty log and of the VMM's.
pub const PAGE_SIZE: u64 = 4096;

/// Pages the VMM wrote since the last call, as a bitmap in KVM's dirty-log
/// layout (bit n of word n / 64 is page n, for RAM from address 0), cleared
/// as it is read.
pub fn take_vmm_dirty(memory: &GuestRam) -> Vec<u64> {
    let mut words = Vec::new();
    for region in memory.iter() {
        let first = (region.start_addr().0 / PAGE_SIZE) as usize;
        let mapping: &MmapRegion<AtomicBitmap> = region;
        let bits = mapping.bitmap().get_and_reset();
        if words.len() < first / 64 + bits.len() + 1 {
            words.resize(first / 64 + bits.len() + 1, 0);
        }
        for (i, word) in bits.into_iter().enumerate() {
            for bit in (0..64).filter(|bit| word & (1 << bit) != 0) {
                let page = first + i * 64 + bit;
                words[page / 64] |= 1 << (page % 64);
            }
        }
    }
    while words.last() == Some(&0) {
        words.pop();
    }
    words
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    #[test]
    fn writes_through_vm_memory_are_reported_once() {
        let memory = GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert!(take_vmm_dirty(&memory).is_empty());
        memory.write_obj(7u32, GuestAddress(0x3000)).unwrap();
        // A write across a page boundary dirties both pages.
        memory.write_slice(&[1; 8], GuestAddress(0x8ffc)).unwrap();
        let mut byte = [0u8];
        memory.read_slice(&mut byte, GuestAddress(0x5000)).unwrap();
        assert_eq!(
            take_vmm_dirty(&memory),
            vec![(1 << 3) | (1 << 8) | (1 << 9)]
        );
        assert!(take_vmm_dirty(&memory).is_empty(), "cleared as read");
    }
}
