//! Digests of the guest's state, so a replay or a backup can check that it
//! is where the recorded run was, beyond what the exit signature covers.

use std::hash::Hasher;

use ft_logging::StateDigest;
use ftvm_core::memory::GuestRam;
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use twox_hash::{XxHash3_64, XxHash64};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// The vCPU's registers and a hash of all guest memory. Called on the vCPU
/// thread at an exit, so nothing writes guest memory meanwhile.
pub fn state_digest(vcpu: &VcpuFd, memory: &GuestRam) -> Result<StateDigest, kvm_ioctls::Error> {
    let (regs, sregs) = (vcpu.get_regs()?, vcpu.get_sregs()?);
    Ok(StateDigest {
        registers: registers_hash(&regs, &sregs),
        memory: memory_hash(memory),
    })
}

fn registers_hash(regs: &kvm_regs, sregs: &kvm_sregs) -> u64 {
    let mut hasher = XxHash64::with_seed(0);
    let general = [
        regs.rax,
        regs.rbx,
        regs.rcx,
        regs.rdx,
        regs.rsi,
        regs.rdi,
        regs.rsp,
        regs.rbp,
        regs.r8,
        regs.r9,
        regs.r10,
        regs.r11,
        regs.r12,
        regs.r13,
        regs.r14,
        regs.r15,
        regs.rip,
        regs.rflags,
    ];
    let control = [
        sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.cr8, sregs.efer,
    ];
    for value in general.iter().chain(&control) {
        hasher.write_u64(*value);
    }
    let segments = [
        &sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss, &sregs.tr, &sregs.ldt,
    ];
    for segment in segments {
        hash_segment(&mut hasher, segment);
    }
    for table in [&sregs.gdt, &sregs.idt] {
        hasher.write_u64(table.base);
        hasher.write_u16(table.limit);
    }
    hasher.finish()
}

fn hash_segment(hasher: &mut XxHash64, segment: &kvm_segment) {
    hasher.write_u64(segment.base);
    hasher.write_u32(segment.limit);
    hasher.write_u16(segment.selector);
    hasher.write(&[
        segment.type_,
        segment.present,
        segment.dpl,
        segment.db,
        segment.s,
        segment.l,
        segment.g,
        segment.avl,
        segment.unusable,
    ]);
}

fn memory_hash(memory: &GuestRam) -> u64 {
    let mut hasher = XxHash64::with_seed(0);
    for region in memory.iter() {
        // SAFETY: the region maps `len` bytes that live as long as `memory`;
        // the guest is stopped at an exit and no other thread writes guest
        // memory, so the bytes do not change while they are hashed.
        let bytes = unsafe { std::slice::from_raw_parts(region.as_ptr(), region.len() as usize) };
        hasher.write_u64(region.start_addr().0);
        hasher.write_u64(XxHash3_64::oneshot(bytes));
    }
    hasher.finish()
}
