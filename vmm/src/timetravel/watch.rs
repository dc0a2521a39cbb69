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
//! The pages written come from the VM's memory tracker: KVM's log of what
//! the guest writes, and guest RAM's own bitmap of what this process writes
//! at exits (virtio buffers and rings).

use ftvm_core::memory::{GuestRam, PAGE_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vm_state::{DirtyPages, VcpuState};

use super::guest_view::{GuestView, ReadError};
use crate::vstate::VmError;

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
    pub fn value(&self, memory: &GuestRam) -> Vec<u8> {
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

/// A copy of RAM as it was when an interval started, and the pages
/// written since.
#[derive(Debug)]
pub struct ShadowRam {
    copy: Vec<u8>,
    written: DirtyPages,
}

impl ShadowRam {
    /// A copy of all of `memory`.
    pub fn new(memory: &GuestRam) -> Self {
        let bytes = memory.iter().map(|region| region.len() as usize).sum();
        let mut copy = vec![0; bytes];
        memory
            .read_slice(&mut copy, GuestAddress(0))
            .expect("RAM is one range from address 0");
        Self {
            copy,
            written: DirtyPages::default(),
        }
    }

    /// Notes pages written; whether any is one of `watched`.
    pub fn note_written(&mut self, written: &DirtyPages, watched: &[u64]) -> bool {
        written.iter().for_each(|page| self.written.insert(page));
        watched.iter().any(|page| written.contains(*page))
    }

    /// A new interval starts: the copy takes the pages written since (and
    /// those in `written`).
    pub fn advance(&mut self, memory: &GuestRam, written: &DirtyPages) {
        self.take_written(written, |address, copy| {
            let _ = memory.read_slice(copy, address);
        });
    }

    /// Puts back the pages written in this interval (and in `written`).
    pub fn restore(&mut self, memory: &GuestRam, written: &DirtyPages) {
        self.take_written(written, |address, copy| {
            let _ = memory.write_slice(copy, address);
        });
    }

    /// Hands each page written in this interval (and in `written`) to
    /// `transfer` with its copy, and forgets them. A failed transfer leaves
    /// the page as it was (only RAM pages are ever logged).
    fn take_written(
        &mut self,
        written: &DirtyPages,
        mut transfer: impl FnMut(GuestAddress, &mut [u8]),
    ) {
        self.note_written(written, &[]);
        for page in self.written.iter() {
            let start = (page * PAGE_SIZE) as usize;
            if let Some(copy) = self.copy.get_mut(start..start + PAGE_SIZE as usize) {
                transfer(GuestAddress(page * PAGE_SIZE), copy);
            }
        }
        self.written = DirtyPages::default();
    }
}

/// Where a watched interval started, to take it back.
#[derive(Debug)]
pub struct IntervalStart {
    pub ram: ShadowRam,
    pub vcpu: VcpuState,
    /// The steps since the last exit at the interval's start (a run resumed
    /// mid-interval starts there).
    pub steps: Option<u64>,
    /// A failure of the dirty log met where it could not be returned.
    pub failure: Option<VmError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 4 * PAGE_SIZE as usize)]).unwrap()
    }

    fn pages(numbers: &[u64]) -> DirtyPages {
        let mut pages = DirtyPages::default();
        numbers.iter().for_each(|page| pages.insert(*page));
        pages
    }

    #[test]
    fn restoring_puts_back_only_the_pages_written_in_the_interval() {
        let memory = ram();
        memory.write_obj(1u64, GuestAddress(0x1000)).unwrap();
        let mut start = ShadowRam::new(&memory);
        // The guest writes pages 1, 2 and 3; the log names page 1 first (a
        // watched page), then page 2 when the interval is taken back.
        memory.write_obj(7u64, GuestAddress(0x1000)).unwrap();
        memory.write_obj(8u64, GuestAddress(0x2000)).unwrap();
        memory.write_obj(9u64, GuestAddress(0x3000)).unwrap();
        assert!(start.note_written(&pages(&[1]), &[1]));
        assert!(!start.note_written(&pages(&[1]), &[3]));
        start.restore(&memory, &pages(&[2]));
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
        start.advance(&memory, &pages(&[2]));
        memory.write_obj(6u64, GuestAddress(0x2000)).unwrap();
        start.restore(&memory, &pages(&[2]));
        assert_eq!(memory.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 5);
    }
}
