//! Naming the instruction KVM's emulator gave up on, so a user learns which
//! guest code to change (docs/DESIGN.md §1: SIMD arithmetic, CMPXCHG16B, ...).

use std::fmt;

use ftvm_core::memory::GuestRam;
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

const EFER_LMA: u64 = 1 << 10;
const MAX_INSTRUCTION_BYTES: usize = 15;

/// An instruction the host could not emulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unemulated {
    pub rip: u64,
    /// The instruction's bytes, when its address could be translated.
    pub bytes: Vec<u8>,
    /// The instruction in Intel syntax, when it could be decoded.
    pub text: Option<String>,
}

impl fmt::Display for Unemulated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the host cannot emulate the guest's instruction")?;
        if let Some(text) = &self.text {
            write!(f, " `{text}`")?;
        }
        write!(f, " at {:#x}", self.rip)?;
        if !self.bytes.is_empty() {
            let hex: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
            write!(f, " (bytes {})", hex.join(" "))?;
        }
        Ok(())
    }
}

/// Reads and decodes the instruction at the vCPU's RIP.
pub fn describe(vcpu: &VcpuFd, memory: &GuestRam) -> Unemulated {
    let (Ok(regs), Ok(sregs)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
        return Unemulated {
            rip: 0,
            bytes: Vec::new(),
            text: None,
        };
    };
    let long_mode = sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0;
    let bitness = match (long_mode, sregs.cs.db != 0) {
        (true, _) => 64,
        (false, true) => 32,
        (false, false) => 16,
    };
    let linear = if long_mode {
        regs.rip
    } else {
        sregs.cs.base.wrapping_add(regs.rip)
    };
    let mut bytes = Vec::new();
    if let Ok(translation) = vcpu.translate_gva(linear)
        && translation.valid != 0
    {
        for i in 0..MAX_INSTRUCTION_BYTES as u64 {
            match memory.read_obj::<u8>(GuestAddress(translation.physical_address + i)) {
                Ok(byte) => bytes.push(byte),
                Err(_) => break,
            }
        }
    }
    let mut decoder = Decoder::with_ip(bitness, &bytes, regs.rip, DecoderOptions::NONE);
    let instruction = decoder.decode();
    let text = (!instruction.is_invalid()).then(|| {
        let mut text = String::new();
        IntelFormatter::new().format(&instruction, &mut text);
        text
    });
    if !instruction.is_invalid() {
        bytes.truncate(instruction.len());
    }
    Unemulated {
        rip: regs.rip,
        bytes,
        text,
    }
}
