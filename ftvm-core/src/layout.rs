//! Where ftvm puts things in guest-physical memory.

/// Boot GDT: null, flat 32-bit code, flat 32-bit data, 32-bit TSS.
pub const GDT_ADDR: u64 = 0x500;
/// `hvm_start_info`, whose address the kernel receives in EBX.
pub const START_INFO_ADDR: u64 = 0x6000;
/// The memory map the start info points at.
pub const MEMMAP_ADDR: u64 = 0x6100;
/// The NUL-terminated kernel command line.
pub const CMDLINE_ADDR: u64 = 0x7000;
/// Longest command line, without its terminating NUL.
pub const CMDLINE_MAX: usize = 4095;
/// End of the area the boot structures occupy; kernels load above it.
pub const BOOT_AREA_END: u64 = 0x8000;
/// The legacy hole (VGA, option ROMs, BIOS) is reserved, never RAM.
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
/// The end of the legacy hole: RAM above it is free again.
pub const LEGACY_HOLE_END: u64 = 0x10_0000;
/// Virtio-mmio devices live at `MMIO_START + n * 0x1000`; RAM ends below.
pub const MMIO_START: u64 = 0xd000_0000;
/// The largest RAM that fits below the MMIO area.
pub const MAX_MEM_MIB: u32 = (MMIO_START >> 20) as u32;
