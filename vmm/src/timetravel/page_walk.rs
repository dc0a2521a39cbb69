//! Guest virtual to physical addresses, by walking the guest's page tables
//! as the CPU would: no paging, 32-bit paging (with 4 MiB pages), PAE, and
//! 4- or 5-level paging in long mode. Accessed and dirty bits are never
//! set: a debugger's look must not change the guest.

/// The control registers that select and root the translation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Physical address bits 12-51 of a PAE or long-mode entry.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error("{address:#x} is not mapped (no present entry at level {level})")]
    NotPresent { address: u64, level: u8 },
    #[error("{address:#x} is not canonical")]
    NotCanonical { address: u64 },
    #[error("the page table entry at {table:#x} is not in RAM")]
    TableOutsideRam { table: u64 },
}

/// Guest-physical memory as the walk reads it.
pub trait PhysicalMemory {
    /// The little-endian u64 at `address`, or `None` outside RAM.
    fn read_u64(&self, address: u64) -> Option<u64>;
}

impl Paging {
    /// The physical address `address` maps to now.
    pub fn translate(&self, address: u64, memory: &impl PhysicalMemory) -> Result<u64, WalkError> {
        if self.cr0 & CR0_PG == 0 {
            return Ok(address);
        }
        if self.cr4 & CR4_PAE == 0 {
            return self.translate_32bit(address, memory);
        }
        let levels: u8 = if self.efer & EFER_LMA == 0 {
            // PAE: a 4-entry page directory pointer table, then 2 levels.
            3
        } else if self.cr4 & CR4_LA57 != 0 {
            5
        } else {
            4
        };
        let address = if levels >= 4 {
            check_canonical(address, levels)?
        } else {
            address & 0xffff_ffff
        };
        let mut table = if levels == 3 {
            self.cr3 & 0xffff_ffe0
        } else {
            self.cr3 & ADDRESS_MASK
        };
        for level in (1..=levels).rev() {
            let shift = 12 + 9 * u32::from(level - 1);
            let index = (address >> shift) & 0x1ff;
            let slot = table + index * 8;
            let entry = memory
                .read_u64(slot)
                .ok_or(WalkError::TableOutsideRam { table: slot })?;
            if entry & PRESENT == 0 {
                return Err(WalkError::NotPresent { address, level });
            }
            // Large pages at the 1 GiB (level 3, not in PAE's top table)
            // and 2 MiB (level 2) levels.
            let large = (level == 2 || (level == 3 && levels >= 4)) && entry & PAGE_SIZE_BIT != 0;
            if large || level == 1 {
                let offset_mask = (1u64 << shift) - 1;
                return Ok((entry & ADDRESS_MASK & !offset_mask) | (address & offset_mask));
            }
            table = entry & ADDRESS_MASK;
        }
        unreachable!("the walk returns at level 1")
    }

    /// Two levels of 1024 4-byte entries; 4 MiB pages with CR4.PSE.
    fn translate_32bit(
        &self,
        address: u64,
        memory: &impl PhysicalMemory,
    ) -> Result<u64, WalkError> {
        let address = address & 0xffff_ffff;
        let read_u32 = |slot: u64| {
            memory
                .read_u64(slot)
                .map(|value| value & 0xffff_ffff)
                .ok_or(WalkError::TableOutsideRam { table: slot })
        };
        let directory = self.cr3 & 0xffff_f000;
        let pde = read_u32(directory + (address >> 22) * 4)?;
        if pde & PRESENT == 0 {
            return Err(WalkError::NotPresent { address, level: 2 });
        }
        if self.cr4 & CR4_PSE != 0 && pde & PAGE_SIZE_BIT != 0 {
            // PSE-36: physical bits 32-39 sit in PDE bits 13-20.
            let high = ((pde >> 13) & 0xff) << 32;
            return Ok(high | (pde & 0xffc0_0000) | (address & 0x3f_ffff));
        }
        let pte = read_u32((pde & 0xffff_f000) + ((address >> 12) & 0x3ff) * 4)?;
        if pte & PRESENT == 0 {
            return Err(WalkError::NotPresent { address, level: 1 });
        }
        Ok((pte & 0xffff_f000) | (address & 0xfff))
    }
}

/// Bits above the top level's must copy its highest bit.
fn check_canonical(address: u64, levels: u8) -> Result<u64, WalkError> {
    let bits = 12 + 9 * u32::from(levels);
    let shift = 64 - bits;
    if ((address << shift) as i64 >> shift) as u64 == address {
        Ok(address)
    } else {
        Err(WalkError::NotCanonical { address })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Memory(HashMap<u64, u64>);

    impl PhysicalMemory for Memory {
        fn read_u64(&self, address: u64) -> Option<u64> {
            (address < 0x1000_0000).then(|| self.0.get(&address).copied().unwrap_or(0))
        }
    }

    const LONG_MODE: Paging = Paging {
        cr0: CR0_PG | 1,
        cr3: 0x1000,
        cr4: CR4_PAE,
        efer: EFER_LMA,
    };

    #[test]
    fn without_paging_addresses_are_physical() {
        let paging = Paging::default();
        assert_eq!(
            paging.translate(0x12_3456, &Memory::default()),
            Ok(0x12_3456)
        );
    }

    #[test]
    fn long_mode_walks_four_levels_to_a_4k_page() {
        let mut memory = Memory::default();
        let address: u64 = 0xffff_8000_0040_1234;
        let index = |level: u32| (address >> (12 + 9 * (level - 1))) & 0x1ff;
        memory.0.insert(0x1000 + index(4) * 8, 0x2000 | 3);
        memory.0.insert(0x2000 + index(3) * 8, 0x3000 | 3);
        memory.0.insert(0x3000 + index(2) * 8, 0x4000 | 3);
        memory.0.insert(0x4000 + index(1) * 8, 0x0abc_d000 | 3);
        assert_eq!(LONG_MODE.translate(address, &memory), Ok(0x0abc_d234));
    }

    #[test]
    fn long_mode_large_pages_end_the_walk_early() {
        let mut memory = Memory::default();
        memory.0.insert(0x1000, 0x2000 | 3);
        // A 1 GiB page for the first GiB, 2 MiB pages in the second.
        memory.0.insert(0x2000, PAGE_SIZE_BIT | 3);
        memory.0.insert(0x2008, 0x3000 | 3);
        memory.0.insert(0x3000 + 8, 0x0060_0000 | PAGE_SIZE_BIT | 3);
        assert_eq!(LONG_MODE.translate(0x1234_5678, &memory), Ok(0x1234_5678));
        assert_eq!(LONG_MODE.translate(0x4020_1234, &memory), Ok(0x0060_1234));
    }

    #[test]
    fn an_absent_entry_or_a_table_outside_ram_fails() {
        let mut memory = Memory::default();
        assert_eq!(
            LONG_MODE.translate(0x1000, &memory),
            Err(WalkError::NotPresent {
                address: 0x1000,
                level: 4
            })
        );
        memory.0.insert(0x1000, 0x7000_0000 | 3);
        assert_eq!(
            LONG_MODE.translate(0x1000, &memory),
            Err(WalkError::TableOutsideRam { table: 0x7000_0000 })
        );
        assert_eq!(
            LONG_MODE.translate(0x0000_8000_0000_0000, &memory),
            Err(WalkError::NotCanonical {
                address: 0x0000_8000_0000_0000
            })
        );
    }

    #[test]
    fn pae_starts_from_a_four_entry_table() {
        let mut memory = Memory::default();
        let paging = Paging {
            cr0: CR0_PG | 1,
            cr3: 0x1020,
            cr4: CR4_PAE,
            efer: 0,
        };
        memory.0.insert(0x1020 + 3 * 8, 0x2000 | 1);
        memory.0.insert(0x2000 + 8, 0x0080_0000 | PAGE_SIZE_BIT | 1);
        assert_eq!(paging.translate(0xc020_0010, &memory), Ok(0x0080_0010));
    }

    #[test]
    fn thirty_two_bit_paging_with_4m_and_4k_pages() {
        let mut memory = Memory::default();
        let paging = Paging {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        memory.0.insert(0x1000, 0x2000 | 1);
        memory.0.insert(0x2000 + 5 * 4, 0x9000 | 1);
        memory.0.insert(0x1000 + 4, 0x0040_0000 | PAGE_SIZE_BIT | 1);
        assert_eq!(paging.translate(0x5123, &memory), Ok(0x9123));
        assert_eq!(paging.translate(0x0045_6789, &memory), Ok(0x0045_6789));
    }
}
