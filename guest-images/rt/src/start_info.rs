//! The PVH `hvm_start_info` the loader passes in EBX.

use crate::{cmdline, print};

const MAGIC: u32 = 0x336e_c578;
/// Bound on the command line's length, in case its terminator is missing.
const MAX_CMDLINE_LEN: usize = 4096;

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

/// What the loader told the kernel.
pub struct BootInfo {
    /// The `hvm_start_info` version.
    pub version: u32,
    /// The kernel command line, without its terminating NUL.
    pub cmdline: &'static [u8],
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
        Some(BootInfo {
            version: info.version,
            cmdline,
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
