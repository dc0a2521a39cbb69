//! Measures how this host's KVM debugs a guest (docs/DESIGN.md §1 and
//! §14): whether hardware data breakpoints
//! (watchpoints) fire, and what single-stepping gives at each kind of
//! platform exit. Run with the probe guest built from tests/guests:
//!
//! ```sh
//! gcc -c tests/guests/debug_probe.S -o /tmp/debug_probe.o
//! ld -T tests/guests/guest.ld /tmp/debug_probe.o -o /tmp/debug_probe
//! cargo run -p vmm --example debug_probe -- /tmp/debug_probe
//! ```
//!
//! It drives KVM_RUN itself: the exits are not handled by ftvm's devices.

use std::borrow::Cow;

use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, kvm_guest_debug,
};
use kvm_ioctls::VcpuExit;
use vmm::kernel::Kernel;
use vmm::machine::{Cpu, Machine};
use vmm::vm_config::VmConfig;

/// The probe guest's watched word.
const WATCHED: u64 = 0x20_0000;
/// DR7: L0, LEN0 = 4 bytes, and R/W0 as given.
fn dr7_watch(rw: u64) -> u64 {
    1 | (rw << 16) | (0b11 << 18)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: debug_probe PROBE_GUEST_ELF");
    let image = std::fs::read(&path).expect("read the probe guest");
    for (name, rw) in [("write", 0b01), ("read/write", 0b11)] {
        let mut debug = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP,
            ..Default::default()
        };
        debug.arch.debugreg[0] = WATCHED;
        debug.arch.debugreg[7] = dr7_watch(rw);
        println!("== data breakpoint ({name}) on {WATCHED:#x}");
        probe(&image, &debug);
    }
    println!("== single-step");
    probe(
        &image,
        &kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
            ..Default::default()
        },
    );
}

/// Runs the probe guest to its exit port with `debug`, printing every
/// KVM_RUN's result and where RIP went.
fn probe(image: &[u8], debug: &kvm_guest_debug) {
    let kernel = Kernel {
        name: "debug_probe".into(),
        image: Cow::Owned(image.to_vec()),
    };
    let config = VmConfig::with_kernel(kernel, 64, "", Default::default()).expect("probe config");
    let mut machine = Machine::new(&config, Cpu::Model).expect("probe VM");
    let fd = machine.vcpu_mut().fd_mut();
    fd.set_guest_debug(debug).expect("KVM_SET_GUEST_DEBUG");
    for _ in 0..100 {
        let before = fd.get_regs().expect("registers").rip;
        let (exit, done) = match fd.run() {
            Ok(VcpuExit::IoOut(0xf4, _)) => ("out to the exit port".to_owned(), true),
            Ok(VcpuExit::IoOut(port, _)) => (format!("port write {port:#x}"), false),
            Ok(VcpuExit::IoIn(port, data)) => {
                data.fill(0);
                (format!("port read {port:#x}"), false)
            }
            Ok(VcpuExit::MmioRead(address, data)) => {
                data.fill(0);
                (format!("MMIO read {address:#x}"), false)
            }
            Ok(VcpuExit::MmioWrite(address, _)) => (format!("MMIO write {address:#x}"), false),
            Ok(VcpuExit::X86Rdmsr(msr)) => {
                *msr.data = 0;
                (format!("RDMSR {:#x}", msr.index), false)
            }
            Ok(VcpuExit::X86Wrmsr(msr)) => (format!("WRMSR {:#x}", msr.index), false),
            Ok(VcpuExit::Debug(arch)) => (format!("debug exit, DR6 {:#x}", arch.dr6), false),
            Ok(VcpuExit::Hlt) => ("HLT".to_owned(), false),
            Ok(other) => (format!("{other:?}"), true),
            Err(error) => (format!("KVM_RUN failed: {error}"), true),
        };
        let after = fd.get_regs().expect("registers").rip;
        println!("  rip {before:#x} -> {after:#x}: {exit}");
        if done {
            return;
        }
    }
}
