//! The global allocator: a talc heap over the RAM above the kernel.
//!
//! Empty until [`init`]; allocations before it fail. The heap's memory is
//! not zeroed (that would be emulated instruction by instruction); the
//! allocator writes only its own bookkeeping into it. Interrupt handlers must
//! not allocate: the heap's lock is a spinlock the interrupted code may hold.

use rt::BootInfo;
use talc::{ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static HEAP: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Gives the RAM above the kernel image (from the start info's memory map)
/// to the heap. Call once, before allocating; ends the VM with an error if
/// there is no such RAM or the heap already has memory.
pub fn init(boot: &BootInfo) {
    let free = boot.free_ram();
    let mut heap = HEAP.lock();
    if heap.get_counters().claimed_bytes != 0 {
        rt::fatal("guest: heap::init called twice");
    }
    let size = (free.end - free.start) as usize;
    // SAFETY: the memory map says this is RAM, `free_ram` puts it above
    // everything the kernel image and boot stack occupy, the identity map
    // covers it, and nothing else in the kernel uses it.
    let claimed = unsafe { heap.claim(Span::from_base_size(free.start as *mut u8, size)) };
    if claimed.is_err() {
        rt::fatal("guest: no RAM above the kernel for the heap");
    }
}

/// Heap bytes in use and in all.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    let counters = heap.get_counters();
    (counters.allocated_bytes, counters.claimed_bytes)
}
