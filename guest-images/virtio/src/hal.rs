//! virtio-drivers' hardware abstraction for our guests: memory is identity
//! mapped (physical = virtual) and there is no IOMMU, so sharing a buffer
//! with a device is giving it the buffer's address.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// DMA memory comes from the heap ([`crate::heap`]).
pub struct IdentityHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing
// else uses until `dma_dealloc`, and its address is its physical address
// under the identity map; the other methods translate addresses by identity.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let memory = match dma_layout(pages) {
            // SAFETY: the layout has a nonzero size (virtio-drivers asks for
            // at least one page).
            Some(layout) if pages > 0 => NonNull::new(unsafe { alloc_zeroed(layout) }),
            _ => None,
        };
        // virtio-drivers takes physical address 0 for a failed allocation.
        memory.map_or((0, NonNull::dangling()), |memory| {
            (memory.as_ptr() as PhysAddr, memory)
        })
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes what `dma_alloc` returned for `pages`,
        // which allocated it with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8)
            .unwrap_or_else(|| rt::fatal("guest: virtio MMIO region at address 0"))
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
