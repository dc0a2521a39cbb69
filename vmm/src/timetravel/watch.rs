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

/// Where an interval started, to take it back.
#[derive(Debug)]
pub struct IntervalStart {
    /// RAM as it was when the interval started.
    shadow: Vec<u8>,
    /// Pages the guest wrote in this interval so far.
    written: Vec<u64>,
    pub vcpu: VcpuSnapshot,
    /// The steps since the last exit at the interval's start (a run resumed
    /// mid-interval starts there).
    pub steps: Option<u64>,
    /// A failure of the dirty log met where it could not be returned.
    pub failure: Option<VmError>,
}

impl IntervalStart {
    /// A copy of all of RAM.
    pub fn new(memory: &GuestMemoryMmap, vcpu: VcpuSnapshot, steps: Option<u64>) -> Self {
        let bytes = memory.iter().map(|region| region.len() as usize).sum();
        let mut shadow = vec![0; bytes];
        memory
            .read_slice(&mut shadow, GuestAddress(0))
            .expect("RAM is one range from address 0");
        Self {
            shadow,
            written: Vec::new(),
            vcpu,
            steps,
            failure: None,
        }
    }

    /// Notes pages the guest wrote; whether any holds one of `watched`.
    pub fn note_written(&mut self, bitmap: &[u64], watched: &[u64]) -> bool {
        if self.written.len() < bitmap.len() {
            self.written.resize(bitmap.len(), 0);
        }
        for (noted, word) in self.written.iter_mut().zip(bitmap) {
            *noted |= word;
        }
        watched.iter().any(|page| is_dirty(bitmap, *page))
    }

    /// A new interval starts: the copy takes the pages written since.
    pub fn advance(
        &mut self,
        memory: &GuestMemoryMmap,
        bitmap: &[u64],
        vcpu: VcpuSnapshot,
        steps: Option<u64>,
    ) {
        self.note_written(bitmap, &[]);
        for page in dirty_pages(&self.written) {
            let start = (page * PAGE_SIZE) as usize;
            if let Some(copy) = self.shadow.get_mut(start..start + PAGE_SIZE as usize) {
                let _ = memory.read_slice(copy, GuestAddress(page * PAGE_SIZE));
            }
        }
        self.written.clear();
        self.vcpu = vcpu;
        self.steps = steps;
    }

    /// Puts back the pages written in this interval (and in `bitmap`).
    pub fn restore_memory(&mut self, memory: &GuestMemoryMmap, bitmap: &[u64]) {
        self.note_written(bitmap, &[]);
        for page in dirty_pages(&self.written) {
            let start = (page * PAGE_SIZE) as usize;
            if let Some(copy) = self.shadow.get(start..start + PAGE_SIZE as usize) {
                let _ = memory.write_slice(copy, GuestAddress(page * PAGE_SIZE));
            }
        }
        self.written.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_name_their_pages() {
        let bitmap = [0b101, 1 << 63];
        assert!(is_dirty(&bitmap, 0) && is_dirty(&bitmap, 2) && is_dirty(&bitmap, 127));
        assert!(!is_dirty(&bitmap, 1) && !is_dirty(&bitmap, 500));
        assert_eq!(dirty_pages(&bitmap).collect::<Vec<_>>(), vec![0, 2, 127]);
    }
}
