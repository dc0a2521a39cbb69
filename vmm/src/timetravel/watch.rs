//! Write watchpoints on hosts whose instruction emulator never fires data
//! breakpoints (ours: `vmm/examples/debug_probe.rs` measures it).
//!
//! A watched run goes from exit to exit freely, with KVM's log of the pages
//! the guest writes. At the start of each interval the vCPU's state is
//! saved and a copy of RAM brought up to date with the pages written in
//! the interval before. When an interval wrote a page a watchpoint is on,
//! it is taken back (the vCPU's state and the pages it wrote come back from
//! those copies; no device changes inside an interval) and stepped,
//! comparing the watched bytes after every instruction.
//!
//! Pages this process writes into the guest (virtio buffers and rings, at
//! exits) are not in KVM's log, so the copy misses them: a watched run of a
//! guest with virtio devices is refused.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::guest_view::{GuestView, ReadError};
use crate::vstate::{VcpuSnapshot, VmError};

pub const PAGE_SIZE: u64 = 4096;

/// The longest range a watchpoint covers.
pub const MAX_WATCH_LEN: u64 = 4096;

/// A watched range of guest memory, as gdb named it (virtually) and as it
/// lies in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub address: u64,
    pub len: u64,
    /// Physical pieces, one per page the range touches.
    pieces: Vec<(u64, usize)>,
}

impl Watch {
    /// The range `address..address + len` as the guest maps it now.
    pub fn new(address: u64, len: u64, view: &GuestView<'_>) -> Result<Self, ReadError> {
        let mut pieces = Vec::new();
        let mut at = address;
        let end = address.saturating_add(len.min(MAX_WATCH_LEN));
        while at < end {
            let in_page = (PAGE_SIZE - at % PAGE_SIZE).min(end - at);
            pieces.push((view.translate(at)?, in_page as usize));
            at += in_page;
        }
        Ok(Self {
            address,
            len,
            pieces,
        })
    }

    /// The numbers of the pages the range lies in.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.pieces.iter().map(|(physical, _)| physical / PAGE_SIZE)
    }

    /// The watched bytes now.
    pub fn value(&self, memory: &GuestMemoryMmap) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(physical, len) in &self.pieces {
            let start = bytes.len();
            bytes.resize(start + len, 0);
            // A piece outside RAM was refused by the walk; read as zeros.
            let _ = memory.read_slice(&mut bytes[start..], GuestAddress(physical));
        }
        bytes
    }
}

/// Whether page `page` is set in a dirty-page bitmap.
pub fn is_dirty(bitmap: &[u64], page: u64) -> bool {
    bitmap
        .get((page / 64) as usize)
        .is_some_and(|word| word & (1 << (page % 64)) != 0)
}

/// The pages set in a dirty-page bitmap.
fn dirty_pages(bitmap: &[u64]) -> impl Iterator<Item = u64> + '_ {
    bitmap.iter().enumerate().flat_map(|(index, &word)| {
        (0..64)
            .filter(move |bit| word & (1 << bit) != 0)
            .map(move |bit| index as u64 * 64 + bit)
    })
}

/// A copy of RAM as it was when an interval started, and the pages the
/// guest wrote since.
#[derive(Debug)]
pub struct ShadowRam {
    copy: Vec<u8>,
    written: Vec<u64>,
}

impl ShadowRam {
    /// A copy of all of `memory`.
    pub fn new(memory: &GuestMemoryMmap) -> Self {
        let bytes = memory.iter().map(|region| region.len() as usize).sum();
        let mut copy = vec![0; bytes];
        memory
            .read_slice(&mut copy, GuestAddress(0))
            .expect("RAM is one range from address 0");
        Self {
            copy,
            written: Vec::new(),
        }
    }

    /// Notes pages the guest wrote; whether any is one of `watched`.
    pub fn note_written(&mut self, bitmap: &[u64], watched: &[u64]) -> bool {
        if self.written.len() < bitmap.len() {
            self.written.resize(bitmap.len(), 0);
        }
        for (noted, word) in self.written.iter_mut().zip(bitmap) {
            *noted |= word;
        }
        watched.iter().any(|page| is_dirty(bitmap, *page))
    }

    /// A new interval starts: the copy takes the pages written since (and
    /// those in `bitmap`).
    pub fn advance(&mut self, memory: &GuestMemoryMmap, bitmap: &[u64]) {
        self.take_written(bitmap, |address, copy| {
            let _ = memory.read_slice(copy, address);
        });
    }

    /// Puts back the pages written in this interval (and in `bitmap`).
    pub fn restore(&mut self, memory: &GuestMemoryMmap, bitmap: &[u64]) {
        self.take_written(bitmap, |address, copy| {
            let _ = memory.write_slice(copy, address);
        });
    }

    /// Hands each page written in this interval (and in `bitmap`) to
    /// `transfer` with its copy, and forgets them. Pages outside RAM are
    /// never logged; a failed transfer leaves the page as it was.
    fn take_written(&mut self, bitmap: &[u64], mut transfer: impl FnMut(GuestAddress, &mut [u8])) {
        self.note_written(bitmap, &[]);
        for page in dirty_pages(&self.written) {
            let start = (page * PAGE_SIZE) as usize;
            if let Some(copy) = self.copy.get_mut(start..start + PAGE_SIZE as usize) {
                transfer(GuestAddress(page * PAGE_SIZE), copy);
            }
        }
        self.written.clear();
    }
}

/// Where a watched interval started, to take it back.
#[derive(Debug)]
pub struct IntervalStart {
    pub ram: ShadowRam,
    pub vcpu: VcpuSnapshot,
    /// The steps since the last exit at the interval's start (a run resumed
    /// mid-interval starts there).
    pub steps: Option<u64>,
    /// A failure of the dirty log met where it could not be returned.
    pub failure: Option<VmError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 * PAGE_SIZE as usize)]).unwrap()
    }

    #[test]
    fn restoring_puts_back_only_the_pages_written_in_the_interval() {
        let memory = ram();
        memory.write_obj(1u64, GuestAddress(0x1000)).unwrap();
        let mut start = ShadowRam::new(&memory);
        // The guest writes pages 1 and 2; the log names page 1 first (a
        // watched page), then page 2 when the interval is taken back.
        memory.write_obj(7u64, GuestAddress(0x1000)).unwrap();
        memory.write_obj(8u64, GuestAddress(0x2000)).unwrap();
        memory.write_obj(9u64, GuestAddress(0x3000)).unwrap();
        assert!(start.note_written(&[0b0010], &[1]));
        assert!(!start.note_written(&[0b0010], &[3]));
        start.restore(&memory, &[0b0100]);
        let word = |address| memory.read_obj::<u64>(GuestAddress(address)).unwrap();
        assert_eq!((word(0x1000), word(0x2000)), (1, 0));
        // Page 3 was not in the log: it keeps the write.
        assert_eq!(word(0x3000), 9);
    }

    #[test]
    fn a_new_interval_copies_the_pages_written_in_the_last() {
        let memory = ram();
        let mut start = ShadowRam::new(&memory);
        memory.write_obj(5u64, GuestAddress(0x2000)).unwrap();
        start.advance(&memory, &[0b0100]);
        memory.write_obj(6u64, GuestAddress(0x2000)).unwrap();
        start.restore(&memory, &[0b0100]);
        assert_eq!(memory.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 5);
    }

    #[test]
    fn bitmaps_name_their_pages() {
        let bitmap = [0b101, 1 << 63];
        assert!(is_dirty(&bitmap, 0) && is_dirty(&bitmap, 2) && is_dirty(&bitmap, 127));
        assert!(!is_dirty(&bitmap, 1) && !is_dirty(&bitmap, 500));
        assert_eq!(dirty_pages(&bitmap).collect::<Vec<_>>(), vec![0, 2, 127]);
    }
}
