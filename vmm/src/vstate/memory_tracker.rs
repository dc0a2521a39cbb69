//! Which pages of guest memory changed: those the guest wrote, from KVM's
//! dirty log, and those the VMM wrote, from guest RAM's own bitmap
//! (`ftvm_core::memory`); and reading pages out for a transfer or a
//! checkpoint.

use std::sync::Arc;

use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vm_state::{DirtyPages, PageSet, StateError};

use super::VmError;
use super::vm::register_memory;
use ftvm_core::memory::{GuestRam, PAGE_SIZE, take_vmm_dirty};

/// Guest memory and its dirty pages, usable from any thread, also while
/// the guest runs (a pre-copy round reads pages then; pages written after
/// [`dirty_pages`](Self::dirty_pages) returned are in its next answer).
#[derive(Debug, Clone)]
pub struct MemoryTracker {
    vm: Arc<VmFd>,
    memory: GuestRam,
}

impl MemoryTracker {
    pub(super) fn new(vm: Arc<VmFd>, memory: GuestRam) -> Self {
        Self { vm, memory }
    }

    /// Starts tracking: KVM logs the guest's writes from now on, and the
    /// VMM's writes so far are forgotten.
    pub fn start(&self) -> Result<(), VmError> {
        register_memory(&self.vm, &self.memory, true)?;
        take_vmm_dirty(&self.memory);
        Ok(())
    }

    /// Stops KVM's logging (it slows the guest's first write to each page).
    pub fn stop(&self) -> Result<(), VmError> {
        register_memory(&self.vm, &self.memory, false)
    }

    /// The pages the guest or the VMM wrote since the last call, or since
    /// [`start`](Self::start).
    pub fn dirty_pages(&self) -> Result<DirtyPages, VmError> {
        let mut pages = DirtyPages::from_words(take_vmm_dirty(&self.memory));
        for (slot, region) in self.memory.iter().enumerate() {
            let words = self
                .vm
                .get_dirty_log(slot as u32, region.len() as usize)
                .map_err(VmError::DirtyLog)?;
            let first = region.start_addr().0 / PAGE_SIZE;
            for page in DirtyPages::from_words(words).iter() {
                pages.insert(first + page);
            }
        }
        Ok(pages)
    }

    /// Reads `pages` out of guest memory.
    pub fn capture(&self, pages: &DirtyPages) -> Result<PageSet, StateError> {
        PageSet::capture(&self.memory, pages.iter())
    }

    /// Reads every page out of guest memory.
    pub fn capture_all(&self) -> PageSet {
        PageSet::capture_all(&self.memory)
    }
}
