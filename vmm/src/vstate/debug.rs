//! Debugging the guest through KVM: single-stepping, hardware breakpoints
//! in DR0-DR3, and the registers a debugger reads.
//!
//! Debug exits are not platform exits: [`Vcpu::resume`] returns them without
//! counting them, applying events or touching a device. On our hosts
//! (DESIGN.md §1) a step gives one debug exit per instruction; an I/O or
//! MMIO instruction gives its platform exit instead, and one that reads
//! (IN, MMIO read, RDMSR, WRMSR) completes only when the vCPU next runs,
//! which [`Vcpu::complete_exit`] does at once. HLT is never stepped: under the trap flag KVM
//! reports it as a debug exit and never halts, which would leave the run.
//! Nor is an interrupt's delivery: the trap flag would be pushed with the
//! interrupted flags, so the guest's memory would differ from a plain
//! replay's and its IRETQ would turn the flag on again.

use ft_logging::MSR_TSC;
use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, Msrs, kvm_fpu,
    kvm_guest_debug, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_sync_regs, kvm_vcpu_events,
};

use kvm_ioctls::{SyncReg, VcpuExit};

use super::Vcpu;
use super::vcpu::INITIAL_MSRS;

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
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: kvm_fpu,
}

/// The vCPU's state between two instructions: enough to take the guest
/// back there within the interval between two exits, where no device
/// changes (registers, FPU and SSE, pending events, the MSRs a guest may
/// write; our CPU model has no XSAVE).
#[derive(Debug, Clone)]
pub struct VcpuSnapshot {
    regs: kvm_regs,
    sregs: kvm_sregs,
    fpu: kvm_fpu,
    events: kvm_vcpu_events,
    msrs: Msrs,
}

#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("cannot set the vCPU's debug state: {0}")]
    SetGuestDebug(#[source] kvm_ioctls::Error),
    #[error("cannot read the vCPU's registers: {0}")]
    Registers(#[source] kvm_ioctls::Error),
    #[error("cannot complete the instruction of an exit: KVM_RUN returned {0}")]
    Complete(String),
    #[error("cannot read the vCPU's pending events: {0}")]
    Events(#[source] kvm_ioctls::Error),
    #[error("cannot save the vCPU's state: {0}")]
    Save(#[source] kvm_ioctls::Error),
    #[error("cannot restore the vCPU's state: {0}")]
    Restore(#[source] kvm_ioctls::Error),
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

    /// Completes the instruction of the exit just handled without running
    /// the guest any further: an access that reads (IN, MMIO read, RDMSR,
    /// WRMSR) is otherwise finished by the next KVM_RUN. Afterwards the
    /// vCPU stands between two instructions, as a debugger shows it.
    pub fn complete_exit(&mut self) -> Result<(), DebugError> {
        self.fd.set_kvm_immediate_exit(1);
        let outcome = match self.fd.run() {
            // KVM finishes the instruction, then sees the immediate exit;
            // a single step reports the finished instruction instead.
            Err(error) if error.errno() == libc::EINTR => Ok(()),
            Ok(VcpuExit::Debug(_)) => Ok(()),
            Ok(other) => Err(DebugError::Complete(format!("{other:?}"))),
            Err(error) => Err(DebugError::Complete(error.to_string())),
        };
        self.fd.set_kvm_immediate_exit(0);
        outcome
    }

    pub fn snapshot(&self) -> Result<VcpuSnapshot, DebugError> {
        let entries: Vec<_> = INITIAL_MSRS
            .iter()
            // The TSC follows the host; our guests never read it directly.
            .filter(|(index, _)| *index != MSR_TSC)
            .map(|&(index, _)| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries)
            .map_err(|_| DebugError::Save(kvm_ioctls::Error::new(libc::E2BIG)))?;
        self.fd.get_msrs(&mut msrs).map_err(DebugError::Save)?;
        Ok(VcpuSnapshot {
            regs: self.fd.get_regs().map_err(DebugError::Save)?,
            sregs: self.fd.get_sregs().map_err(DebugError::Save)?,
            fpu: self.fd.get_fpu().map_err(DebugError::Save)?,
            events: self.fd.get_vcpu_events().map_err(DebugError::Save)?,
            msrs,
        })
    }

    /// Back to `snapshot`. An exit KVM_RUN left unfinished must have been
    /// completed first ([`Vcpu::complete_exit`]), or KVM would finish it on
    /// top of the restored state.
    pub fn restore(&self, snapshot: &VcpuSnapshot) -> Result<(), DebugError> {
        self.fd
            .set_sregs(&snapshot.sregs)
            .map_err(DebugError::Restore)?;
        self.fd
            .set_regs(&snapshot.regs)
            .map_err(DebugError::Restore)?;
        self.fd
            .set_fpu(&snapshot.fpu)
            .map_err(DebugError::Restore)?;
        self.fd
            .set_msrs(&snapshot.msrs)
            .map_err(DebugError::Restore)?;
        // Last: the sregs' interrupt bitmap also queues an interrupt.
        self.fd
            .set_vcpu_events(&snapshot.events)
            .map_err(DebugError::Restore)
    }

    /// The vector of an interrupt injected at a counted exit that the guest
    /// has not taken yet: it takes it when it next runs.
    pub fn queued_interrupt(&self) -> Result<Option<u8>, DebugError> {
        let events = self.fd.get_vcpu_events().map_err(DebugError::Events)?;
        Ok((events.interrupt.injected != 0).then_some(events.interrupt.nr))
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
