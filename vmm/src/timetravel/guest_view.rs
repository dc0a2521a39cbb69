//! The guest as a debugger reads it: memory by virtual address through the
//! guest's own page tables, and the instruction at the program counter.
//! Reads never leave RAM, so an MMIO address is an error and no device
//! ever sees a debugger's read.

use ftvm_core::memory::{GuestRam, PAGE_SIZE};
use iced_x86::{Decoder, DecoderOptions, Instruction};
use vm_memory::{Bytes, GuestAddress};

use kvm_bindings::kvm_sregs;

use super::page_walk::{Paging, PhysicalMemory, WalkError};

const MAX_INSTRUCTION_BYTES: usize = 15;
const CR0_PE: u64 = 1;
const EFER_LMA: u64 = 1 << 10;
const GATE_PRESENT: u8 = 0x80;

/// Why guest memory cannot be read at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The guest's page tables do not map it.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// It maps to this physical address, outside RAM.
    #[error("physical address {0:#x} is not RAM")]
    NotRam(u64),
}

impl PhysicalMemory for GuestRam {
    fn read_u64(&self, address: u64) -> Option<u64> {
        self.read_obj::<u64>(GuestAddress(address)).ok()
    }
}

/// Guest memory seen through the vCPU's system registers at one moment.
#[derive(Debug)]
pub struct GuestView<'a> {
    memory: &'a GuestRam,
    sregs: &'a kvm_sregs,
}

impl<'a> GuestView<'a> {
    /// `memory` as the guest sees it with system registers `sregs`.
    pub fn new(memory: &'a GuestRam, sregs: &'a kvm_sregs) -> Self {
        Self { memory, sregs }
    }

    fn paging(&self) -> Paging {
        let sregs = self.sregs;
        Paging {
            cr0: sregs.cr0,
            cr3: sregs.cr3,
            cr4: sregs.cr4,
            efer: sregs.efer,
        }
    }

    /// The physical address of virtual address `address`.
    pub fn translate(&self, address: u64) -> Result<u64, ReadError> {
        Ok(self.paging().translate(address, self.memory)?)
    }

    /// Fills `buf` from virtual address `address` page by page; returns how
    /// many bytes could be read, failing only when not even the first can.
    pub fn read(&self, address: u64, buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut done = 0;
        while done < buf.len() {
            let virtual_address = address.wrapping_add(done as u64);
            let in_page = (PAGE_SIZE - virtual_address % PAGE_SIZE) as usize;
            let chunk = in_page.min(buf.len() - done);
            let read = self.translate(virtual_address).and_then(|physical| {
                self.memory
                    .read_slice(&mut buf[done..done + chunk], GuestAddress(physical))
                    .map_err(|_| ReadError::NotRam(physical))
            });
            match read {
                Ok(()) => done += chunk,
                Err(error) if done == 0 => return Err(error),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// Where the guest's interrupt descriptor table sends `vector`, as a
    /// linear address; `None` for a gate that is absent or unreadable.
    pub fn interrupt_handler(&self, vector: u8) -> Option<u64> {
        let sregs = self.sregs;
        let vector = u64::from(vector);
        if sregs.cr0 & CR0_PE == 0 {
            // Real mode: segment:offset pairs.
            let mut entry = [0; 4];
            self.read_exact(sregs.idt.base + vector * 4, &mut entry)?;
            let offset = u64::from(u16::from_le_bytes([entry[0], entry[1]]));
            let segment = u64::from(u16::from_le_bytes([entry[2], entry[3]]));
            return Some(segment * 16 + offset);
        }
        let long_mode = sregs.efer & EFER_LMA != 0;
        let mut gate = [0; 16];
        let len = if long_mode { 16 } else { 8 };
        self.read_exact(sregs.idt.base + vector * len as u64, &mut gate[..len])?;
        if gate[5] & GATE_PRESENT == 0 {
            return None;
        }
        let word = |at: usize| u64::from(u16::from_le_bytes([gate[at], gate[at + 1]]));
        let mut offset = word(0) | word(6) << 16;
        if long_mode {
            offset |= u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]])) << 32;
        }
        // Our guests' code segments are flat.
        Some(offset)
    }

    fn read_exact(&self, address: u64, buf: &mut [u8]) -> Option<()> {
        (self.read(address, buf).ok()? == buf.len()).then_some(())
    }

    /// The instruction at `rip` in the code segment, if its bytes can be
    /// read and decoded.
    pub fn instruction_at(&self, rip: u64) -> Option<Instruction> {
        let sregs = self.sregs;
        let bitness = if sregs.cs.l != 0 {
            64
        } else if sregs.cs.db != 0 {
            32
        } else {
            16
        };
        let linear = if bitness == 64 {
            rip
        } else {
            sregs.cs.base.wrapping_add(rip)
        };
        let mut bytes = [0; MAX_INSTRUCTION_BYTES];
        let len = self.read(linear, &mut bytes).ok()?;
        let instruction =
            Decoder::with_ip(bitness, &bytes[..len], rip, DecoderOptions::NONE).decode();
        (!instruction.is_invalid()).then_some(instruction)
    }
}
