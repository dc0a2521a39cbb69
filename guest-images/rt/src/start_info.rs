//! The PVH `hvm_start_info` the loader passes in EBX.

use core::ops::Range;

use crate::{cmdline, print};

const MAGIC: u32 = 0x336e_c578;
/// Bound on the command line's length, in case its terminator is missing.
const MAX_CMDLINE_LEN: usize = 4096;
/// Bound on the memory map's length, in case it is garbage.
const MAX_MEMMAP_ENTRIES: usize = 128;
/// Memory map entry type of usable RAM (as in the E820 map).
const MEMMAP_RAM: u32 = 1;
/// The identity map of boot.rs ends here; memory above is out of reach.
const MAPPED_END: u64 = 1 << 32;

/// The leading fields of `struct hvm_start_info` (Xen's
/// `public/arch-x86/hvm/start_info.h`), the same in every version.
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
}

/// The fields version 1 of `struct hvm_start_info` adds, at offset 0x28.
#[repr(C)]
struct StartInfoMemmap {
    memmap_paddr: u64,
    memmap_entries: u32,
}

/// Offset of [`StartInfoMemmap`] in `struct hvm_start_info`.
const MEMMAP_FIELDS_OFFSET: u64 = 0x28;

/// `struct hvm_memmap_table_entry`. Packed: the ABI promises no alignment.
#[repr(C, packed)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    type_: u32,
    reserved: u32,
}

/// What the loader told the kernel.
pub struct BootInfo {
    /// The `hvm_start_info` version.
    pub version: u32,
    /// The kernel command line, without its terminating NUL.
    pub cmdline: &'static [u8],
    /// The memory map (empty before start info version 1).
    memory_map: &'static [MemmapEntry],
}

impl BootInfo {
    /// Reads the start info at physical address `paddr`, or `None` when
    /// there is none (no address, or a wrong magic number).
    ///
    /// # Safety
    ///
    /// `paddr` is 0 or the address of readable memory at least as large as
    /// a start info; if that holds a start info, its command line must be
    /// readable, and neither may be written for the rest of the VM's life.
    pub(crate) unsafe fn read(paddr: u64) -> Option<BootInfo> {
        if paddr == 0 {
            return None;
        }
        // SAFETY: the caller guarantees the memory; the ABI only promises
        // 4-byte alignment, hence the unaligned read.
        let info = unsafe { (paddr as *const StartInfo).read_unaligned() };
        if info.magic != MAGIC {
            return None;
        }
        let cmdline = if info.cmdline_paddr == 0 {
            &[][..]
        } else {
            // SAFETY: a valid start info points at a NUL-terminated command
            // line that nothing writes (caller's guarantee).
            unsafe { c_string(info.cmdline_paddr as *const u8) }
        };
        let memory_map = if info.version >= 1 {
            // SAFETY: a version 1 start info has these fields (caller's
            // guarantee); unaligned for the same reason as above.
            let fields = unsafe {
                ((paddr + MEMMAP_FIELDS_OFFSET) as *const StartInfoMemmap).read_unaligned()
            };
            let entries = (fields.memmap_entries as usize).min(MAX_MEMMAP_ENTRIES);
            // SAFETY: a valid start info points at `memmap_entries` entries
            // that nothing writes (caller's guarantee); they need no alignment.
            unsafe {
                core::slice::from_raw_parts(fields.memmap_paddr as *const MemmapEntry, entries)
            }
        } else {
            &[]
        };
        Some(BootInfo {
            version: info.version,
            cmdline,
            memory_map,
        })
    }

    /// The RAM ranges of the memory map, clipped to the identity-mapped
    /// first 4 GiB.
    pub fn ram(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.memory_map
            .iter()
            .filter(|entry| entry.type_ == MEMMAP_RAM)
            .map(|entry| {
                let end = entry.addr.saturating_add(entry.size).min(MAPPED_END);
                entry.addr..end
            })
            .filter(|range| !range.is_empty())
    }

    /// The RAM above the loaded kernel image, page aligned: the rest of the
    /// RAM range the image ends in. Empty when the memory map has no such
    /// range. Nothing uses it until a kernel claims it (e.g. as a heap).
    pub fn free_ram(&self) -> Range<u64> {
        let start = image_end().next_multiple_of(PAGE_SIZE);
        self.ram()
            .find(|range| range.contains(&start))
            .map_or(0..0, |range| {
                start..(range.end & !(PAGE_SIZE - 1)).max(start)
            })
    }

    /// The decimal value of command-line parameter `key=value`, or `default`
    /// when absent. Ends the VM with an error if the value is not a number.
    pub fn number(&self, key: &str, default: u64) -> u64 {
        let Some(value) = cmdline::param(self.cmdline, key.as_bytes()) else {
            return default;
        };
        cmdline::parse_decimal(value).unwrap_or_else(|| {
            print::start_line();
            print::print("guest: ");
            print::print(key);
            print::print("=");
            print::print_bytes(value);
            crate::fatal(" is not a 64-bit decimal number")
        })
    }
}

const PAGE_SIZE: u64 = 4096;

/// The first byte past the loaded kernel image and its boot stack.
fn image_end() -> u64 {
    unsafe extern "C" {
        /// Defined in boot.rs past the boot stack, which link.ld puts last.
        safe static rt_image_end: u8;
    }
    &raw const rt_image_end as u64
}

/// The bytes before the NUL at `start` (at most `MAX_CMDLINE_LEN`).
///
/// # Safety
///
/// The bytes up to the NUL, or `MAX_CMDLINE_LEN` bytes, are readable and
/// never written.
unsafe fn c_string(start: *const u8) -> &'static [u8] {
    let mut len = 0;
    // SAFETY: reads stay within the bytes the caller vouches for.
    while len < MAX_CMDLINE_LEN && unsafe { start.add(len).read() } != 0 {
        len += 1;
    }
    // SAFETY: as above; these bytes are never written.
    unsafe { core::slice::from_raw_parts(start, len) }
}
