//! The vCPU state at the PVH entry point, built as plain values so that it
//! can be checked without KVM.
//!
//! PVH ABI: 32-bit protected mode with paging off, flat 4 GiB code and data
//! segments, a 32-bit TSS, interrupts off, EBX = physical address of the
//! `hvm_start_info`. Everything else is set explicitly too, so a guest never
//! sees a value KVM or the host chose.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

use ftvm_core::layout::{GDT_ADDR, START_INFO_ADDR};

const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

/// CR0.PE and CR0.ET (hard-wired to one on every CPU since the 486).
const CR0_PE_ET: u64 = 0x11;
/// RFLAGS bit 1 is reserved and always one; IF and everything else clear.
const RFLAGS_RESERVED: u64 = 0x2;

/// Access flags (type, S, DPL, P in bits 0–7; AVL, L, D/B, G in bits 12–15).
const FLAT_CODE: u16 = 0xc09b;
const FLAT_DATA: u16 = 0xc093;
const TSS_BUSY: u16 = 0x008b;

/// One GDT descriptor.
fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0xf_0000) << 32)
        | ((base & 0xff_ffff) << 16)
        | (limit & 0xffff)
}

/// The boot GDT written at `GDT_ADDR`: null, code, data, TSS.
pub fn gdt() -> [u64; 4] {
    [
        0,
        descriptor(FLAT_CODE, 0, 0xf_ffff),
        descriptor(FLAT_DATA, 0, 0xf_ffff),
        descriptor(TSS_BUSY, 0, 0x67),
    ]
}

/// The segment register contents matching a GDT descriptor.
fn segment(selector: u16, flags: u16, limit: u32) -> kvm_segment {
    let granular = flags & 0x8000 != 0;
    kvm_segment {
        base: 0,
        limit: if granular {
            (limit << 12) | 0xfff
        } else {
            limit
        },
        selector,
        type_: (flags & 0xf) as u8,
        present: u8::from(flags & 0x80 != 0),
        dpl: ((flags >> 5) & 3) as u8,
        db: u8::from(flags & 0x4000 != 0),
        s: u8::from(flags & 0x10 != 0),
        l: u8::from(flags & 0x2000 != 0),
        g: u8::from(granular),
        avl: u8::from(flags & 0x1000 != 0),
        unusable: 0,
        padding: 0,
    }
}

/// General registers at the PVH entry point.
pub fn regs(entry: u32) -> kvm_regs {
    kvm_regs {
        rip: u64::from(entry),
        rbx: START_INFO_ADDR,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

/// System registers at the PVH entry point.
pub fn sregs() -> kvm_sregs {
    let code = segment(CODE_SELECTOR, FLAT_CODE, 0xf_ffff);
    let data = segment(DATA_SELECTOR, FLAT_DATA, 0xf_ffff);
    let mut sregs = kvm_sregs {
        cs: code,
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: segment(TSS_SELECTOR, TSS_BUSY, 0x67),
        ldt: kvm_segment {
            type_: 2,
            present: 1,
            unusable: 1,
            ..Default::default()
        },
        cr0: CR0_PE_ET,
        ..Default::default()
    };
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of::<[u64; 4]>() - 1) as u16;
    sregs.idt.limit = 0;
    sregs
}

/// x87 and SSE control state as after FNINIT, with all exceptions masked.
pub fn fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_match_the_well_known_flat_encodings() {
        let gdt = gdt();
        assert_eq!(gdt[1], 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt[2], 0x00cf_9300_0000_ffff);
        assert_eq!(gdt[3], 0x0000_8b00_0000_0067);
    }

    #[test]
    fn entry_state_follows_the_pvh_abi() {
        let (regs, sregs) = (regs(0x10_0000), sregs());
        assert_eq!(regs.rip, 0x10_0000);
        assert_eq!(regs.rbx, START_INFO_ADDR);
        assert_eq!(regs.rflags & 0x200, 0, "interrupts off");
        assert_eq!(sregs.cr0 & 1, 1, "protected mode");
        assert_eq!(sregs.cr0 & 0x8000_0000, 0, "paging off");
        assert_eq!(
            (sregs.cs.db, sregs.cs.l, sregs.cs.limit),
            (1, 0, 0xffff_ffff)
        );
        assert_eq!(sregs.ss.limit, 0xffff_ffff);
        assert_eq!((sregs.tr.type_, sregs.tr.limit), (0xb, 0x67));
        assert_eq!(sregs.efer, 0);
    }
}
