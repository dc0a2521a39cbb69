//! Debugging the guest through KVM: single-stepping, hardware breakpoints
//! in DR0-DR3, and the registers a debugger reads.
//!
//! Debug exits are not platform exits: [`Vcpu::resume`] returns them without
//! counting them, applying events or touching a device. On our hosts
//! (DESIGN.md §1) a step gives one debug exit per instruction; an I/O or
//! MMIO instruction gives its platform exit instead, and one that reads
//! (IN, MMIO read, RDMSR, WRMSR) completes only when the vCPU next runs
//! (a debugger pauses there, as a state capture does). HLT is never
//! stepped: under the trap flag KVM reports it as a debug exit and never
//! halts, which would leave the run.
//! Nor is an interrupt's delivery: the trap flag would be pushed with the
//! interrupted flags, so the guest's memory would differ from a plain
//! replay's and its IRETQ would turn the flag on again.

use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, kvm_fpu, kvm_guest_debug,
    kvm_regs, kvm_sregs, kvm_sync_regs,
};

use kvm_ioctls::SyncReg;

use super::Vcpu;

/// Hardware breakpoint slots: DR0-DR3.
pub const BREAKPOINT_SLOTS: usize = 4;

/// What the vCPU stops for besides platform exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Stop after every instruction.
    pub single_step: bool,
    /// Instruction breakpoints by linear address, one per debug register.
    pub breakpoints: [Option<u64>; BREAKPOINT_SLOTS],
}

impl GuestDebug {
    fn to_kvm(self) -> kvm_guest_debug {
        let mut debug = kvm_guest_debug::default();
        let armed = self.breakpoints.iter().any(Option::is_some);
        if !self.single_step && !armed {
            return debug;
        }
        debug.control = KVM_GUESTDBG_ENABLE;
        if self.single_step {
            debug.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if armed {
            debug.control |= KVM_GUESTDBG_USE_HW_BP;
            let mut dr7 = 0;
            for (slot, address) in self.breakpoints.iter().enumerate() {
                if let Some(address) = address {
                    debug.arch.debugreg[slot] = *address;
                    // Local enable; R/W and LEN 0: break on execution.
                    dr7 |= 1 << (2 * slot);
                }
            }
            debug.arch.debugreg[7] = dr7;
        }
        debug
    }
}

/// The vCPU's registers as a debugger shows them.
#[derive(Debug, Clone, Copy)]
pub struct Registers {
    /// The general registers, RIP and RFLAGS.
    pub regs: kvm_regs,
    /// Segments, control registers, descriptor tables.
    pub sregs: kvm_sregs,
    /// x87 and SSE.
    pub fpu: kvm_fpu,
}

/// Why debugging through KVM failed.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// KVM_SET_GUEST_DEBUG failed.
    #[error("cannot set the vCPU's debug state: {0}")]
    SetGuestDebug(#[source] kvm_ioctls::Error),
    /// The registers cannot be read.
    #[error("cannot read the vCPU's registers: {0}")]
    Registers(#[source] kvm_ioctls::Error),
    /// KVM_RUN failed while completing an exit's access.
    #[error("cannot complete the access of an exit: KVM_RUN failed: {0}")]
    Complete(String),
}

impl Vcpu {
    /// Single-steps and arms breakpoints as `debug` says, from the next
    /// KVM_RUN on. Set before every step: KVM sets the trap flag only while
    /// the guest is where it was when stepping was asked for.
    pub fn set_guest_debug(&self, debug: GuestDebug) -> Result<(), DebugError> {
        self.fd
            .set_guest_debug(&debug.to_kvm())
            .map_err(DebugError::SetGuestDebug)
    }

    /// Completes the access of the exit KVM_RUN last returned without
    /// running the guest and without handling anything KVM reports: for
    /// an exit a debugger held and is about to take back, so that KVM does
    /// not finish it on top of the restored state.
    pub fn discard_exit(&mut self) -> Result<(), DebugError> {
        self.fd.set_kvm_immediate_exit(1);
        // KVM finishes the access, then sees the immediate exit; finishing
        // it may make another exit (a string instruction's next element),
        // which is discarded the same way.
        let outcome = loop {
            match self.fd.run() {
                Err(error) if error.errno() == libc::EINTR => break Ok(()),
                Ok(_) => {}
                Err(error) => break Err(DebugError::Complete(error.to_string())),
            }
        };
        self.fd.set_kvm_immediate_exit(0);
        self.settled = outcome.is_ok();
        outcome
    }

    /// Has every KVM_RUN leave the system registers and pending events, as
    /// well as the registers, in the run structure ([`Vcpu::synced`]): a
    /// debugger reads them at every step, and each ioctl costs about as
    /// much as a KVM_RUN on our hosts.
    pub fn sync_debug_state(&mut self) {
        self.fd.set_sync_valid_reg(SyncReg::SystemRegister);
        self.fd.set_sync_valid_reg(SyncReg::VcpuEvents);
    }

    /// The registers, system registers and pending events as the last
    /// KVM_RUN left them (see [`Vcpu::sync_debug_state`]); anything set
    /// since is not in them until the next KVM_RUN.
    pub fn synced(&self) -> kvm_sync_regs {
        self.fd.sync_regs()
    }

    /// The registers now (KVM hides the trap flag it sets to step).
    pub fn registers(&self) -> Result<Registers, DebugError> {
        Ok(Registers {
            regs: self.fd.get_regs().map_err(DebugError::Registers)?,
            sregs: self.fd.get_sregs().map_err(DebugError::Registers)?,
            fpu: self.fd.get_fpu().map_err(DebugError::Registers)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_stop_for_disables_guest_debugging() {
        assert_eq!(GuestDebug::default().to_kvm().control, 0);
    }

    #[test]
    fn breakpoints_go_to_their_debug_registers_as_execution_breakpoints() {
        let debug = GuestDebug {
            single_step: true,
            breakpoints: [Some(0x1000), None, Some(0x2000), None],
        };
        let kvm = debug.to_kvm();
        assert_eq!(
            kvm.control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_HW_BP
        );
        assert_eq!(kvm.arch.debugreg[0], 0x1000);
        assert_eq!(kvm.arch.debugreg[2], 0x2000);
        // L0 and L2, every R/W and LEN field zero.
        assert_eq!(kvm.arch.debugreg[7], 0b1_0001);
    }
}
