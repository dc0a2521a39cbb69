//! Loading a PVH kernel and everything it finds in memory at its entry.

pub mod cpu_state;
pub mod elf;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::Elf;
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};
use linux_loader::loader::{KernelLoader, load_cmdline};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use ftvm_core::layout::{
    CMDLINE_ADDR, CMDLINE_MAX, GDT_ADDR, LEGACY_HOLE_END, LEGACY_HOLE_START, MEMMAP_ADDR,
    START_INFO_ADDR,
};
use ftvm_core::memory::GuestRam;

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Why a kernel cannot be put in guest memory.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// linux-loader could not load it.
    #[error("cannot load the kernel: {0}")]
    Load(#[source] linux_loader::loader::Error),
    /// The command line is invalid.
    #[error("invalid command line: {0}")]
    Cmdline(#[source] linux_loader::cmdline::Error),
    /// The command line cannot be written into guest memory.
    #[error("cannot write the command line: {0}")]
    WriteCmdline(#[source] linux_loader::loader::Error),
    /// `hvm_start_info` cannot be written into guest memory.
    #[error("cannot write the start info: {0}")]
    WriteStartInfo(#[source] linux_loader::configurator::Error),
    /// The boot GDT cannot be written into guest memory.
    #[error("cannot write the boot GDT: {0}")]
    WriteGdt(#[source] vm_memory::GuestMemoryError),
}

/// Loads `image`, which [`elf::validate`] accepted for this RAM size, then
/// writes the GDT, command line, memory map and `hvm_start_info`.
pub fn load(mem: &GuestRam, image: &[u8], cmdline: &str) -> Result<(), BootError> {
    let ram_end = mem.last_addr().0 + 1;
    let mut reader = std::io::Cursor::new(image);
    Elf::load(mem, None, &mut reader, None).map_err(BootError::Load)?;

    let mut line = Cmdline::new(CMDLINE_MAX + 1).map_err(BootError::Cmdline)?;
    line.insert_str(cmdline).map_err(BootError::Cmdline)?;
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &line).map_err(BootError::WriteCmdline)?;

    let memmap = memory_map(ram_end);
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(START_INFO_ADDR));
    params.set_sections(&memmap, GuestAddress(MEMMAP_ADDR));
    PvhBootConfigurator::write_bootparams::<GuestRam>(&params, mem)
        .map_err(BootError::WriteStartInfo)?;

    for (i, descriptor) in cpu_state::gdt().iter().enumerate() {
        mem.write_obj(*descriptor, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(BootError::WriteGdt)?;
    }
    Ok(())
}

/// RAM below the legacy hole, the hole itself, and RAM above 1 MiB.
fn memory_map(ram_end: u64) -> Vec<hvm_memmap_table_entry> {
    let entry = |addr: u64, end: u64, type_| hvm_memmap_table_entry {
        addr,
        size: end - addr,
        type_,
        reserved: 0,
    };
    let mut map = vec![
        entry(0, LEGACY_HOLE_START.min(ram_end), E820_RAM),
        entry(LEGACY_HOLE_START, LEGACY_HOLE_END, E820_RESERVED),
    ];
    if ram_end > LEGACY_HOLE_END {
        map.push(entry(LEGACY_HOLE_END, ram_end, E820_RAM));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_covers_ram_around_the_legacy_hole() {
        let map = memory_map(64 << 20);
        let ranges: Vec<_> = map.iter().map(|e| (e.addr, e.size, e.type_)).collect();
        assert_eq!(
            ranges,
            vec![
                (0, 0xa_0000, E820_RAM),
                (0xa_0000, 0x6_0000, E820_RESERVED),
                (0x10_0000, (64 << 20) - 0x10_0000, E820_RAM),
            ]
        );
    }
}
