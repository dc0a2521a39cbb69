//! The vCPU: its initial state, the loop that runs it through the exit
//! handler, and interrupt injection.

use std::sync::Arc;

use ft_logging::{EventSource, OutputSink, StateDigest};
use kvm_bindings::{
    CpuId, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, Msrs, kvm_debugregs, kvm_enable_cap, kvm_interrupt,
    kvm_msr_entry, kvm_vcpu_events,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use prometheus::IntCounter;
use tracing::{trace, warn};
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

use super::VmError;
use super::emulation::{self, Unemulated};
use super::state_digest::state_digest;
use crate::boot::cpu_state;
use crate::host::StopSignal;
use ftvm_core::exit_handler::{Access, CoreError, ExitHandler, Flow, Step, VmEnd};
use ftvm_core::memory::GuestRam;

// kvm-ioctls does not wrap KVM_INTERRUPT, the injection ioctl for a
// user-space interrupt controller.
ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);

/// MSRs given explicit initial values so that nothing of the host's or of
/// KVM's defaults reaches the guest.
const INITIAL_MSRS: &[(u32, u64)] = &[
    (0x10, 0),                      // TSC
    (0x174, 0),                     // SYSENTER_CS
    (0x175, 0),                     // SYSENTER_ESP
    (0x176, 0),                     // SYSENTER_EIP
    (0x1a0, 1),                     // MISC_ENABLE: fast strings
    (0x277, 0x0007_0406_0007_0406), // PAT: power-on default
    (0xc000_0081, 0),               // STAR
    (0xc000_0082, 0),               // LSTAR
    (0xc000_0083, 0),               // CSTAR
    (0xc000_0084, 0),               // SYSCALL_MASK
    (0xc000_0102, 0),               // KERNEL_GS_BASE
];

/// Where a run that may pause stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The run ended.
    Ended(VmEnd),
    /// At an exit boundary, settled: the state can be captured, and a run
    /// goes on from here.
    Paused,
}

/// Why running the VM failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The deterministic core failed.
    #[error(transparent)]
    Core(CoreError),
    /// KVM_RUN failed.
    #[error("KVM_RUN failed: {0}")]
    Run(#[source] kvm_ioctls::Error),
    /// KVM refused an interrupt.
    #[error("cannot inject interrupt vector {vector:#x}: {source}")]
    Interrupt {
        /// The interrupt vector.
        vector: u8,
        /// The error underneath.
        source: kvm_ioctls::Error,
    },
    /// The guest ran an instruction KVM cannot emulate.
    #[error("{0}")]
    Unemulated(Unemulated),
    /// A KVM internal error of this suberror.
    #[error("KVM internal error (suberror {0})")]
    Internal(u32),
    /// KVM could not enter the guest, for this hardware reason.
    #[error("KVM could not enter the guest (hardware reason {0:#x})")]
    FailEntry(u64),
    /// An exit ftvm does not handle.
    #[error("unexpected exit from KVM: {0}")]
    UnexpectedExit(String),
    /// The guest's registers cannot be read for a digest.
    #[error("cannot read the guest's state for a digest: {0}")]
    StateDigest(#[source] kvm_ioctls::Error),
}

/// The one vCPU, and the loop that runs it.
#[derive(Debug)]
pub struct Vcpu {
    pub(super) fd: VcpuFd,
    memory: GuestRam,
    /// The MSRs KVM saves for the guest and lets this vCPU read: what a
    /// captured state holds.
    pub(super) msrs: Vec<u32>,
    /// No operation of the last exit waits for KVM_RUN to complete it: KVM
    /// finishes an I/O, MMIO or MSR access only when it is entered again
    /// (an immediate-exit KVM_RUN does that without running the guest),
    /// and until then its registers do not show the access done.
    pub(super) settled: bool,
    /// Counts every exit, for other threads to read.
    exits: Option<IntCounter>,
}

impl Vcpu {
    pub(super) fn new(
        mut fd: VcpuFd,
        cpuid: &CpuId,
        entry: u32,
        memory: GuestRam,
        saved_msrs: &[u32],
    ) -> Result<Self, VmError> {
        let set = |what| move |source| VmError::SetVcpuState { what, source };
        fd.set_cpuid2(cpuid).map_err(set("CPUID"))?;
        let enforce = kvm_enable_cap {
            cap: KVM_CAP_ENFORCE_PV_FEATURE_CPUID,
            args: [1, 0, 0, 0],
            ..Default::default()
        };
        if let Err(error) = fd.enable_cap(&enforce) {
            warn!(%error, "KVM cannot enforce the paravirtual CPUID; PV MSRs stay hidden by the CPUID model alone");
        }
        // Of the MSRs KVM saves and those ftvm sets, those KVM reads for
        // this CPU model: what a captured state holds.
        let mut saved: Vec<u32> = saved_msrs
            .iter()
            .copied()
            .chain(INITIAL_MSRS.iter().map(|&(index, _)| index))
            .collect();
        saved.sort_unstable();
        saved.dedup();
        saved.retain(|&index| {
            Msrs::from_entries(&[kvm_msr_entry {
                index,
                ..Default::default()
            }])
            .is_ok_and(|mut one| fd.get_msrs(&mut one) == Ok(1))
        });
        fd.set_regs(&cpu_state::regs(entry))
            .map_err(set("registers"))?;
        fd.set_sregs(&cpu_state::sregs())
            .map_err(set("system registers"))?;
        fd.set_fpu(&cpu_state::fpu()).map_err(set("FPU"))?;
        let entries: Vec<_> = INITIAL_MSRS
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| VmError::SetMsr { index: 0 })?;
        let written = fd.set_msrs(&msrs).map_err(set("MSRs"))?;
        if let Some(&(index, _)) = INITIAL_MSRS.get(written) {
            return Err(VmError::SetMsr { index });
        }
        let debugregs = kvm_debugregs {
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            ..Default::default()
        };
        fd.set_debug_regs(&debugregs)
            .map_err(set("debug registers"))?;
        fd.set_vcpu_events(&kvm_vcpu_events::default())
            .map_err(set("pending events"))?;
        fd.set_sync_valid_reg(SyncReg::Register);
        Ok(Self {
            fd,
            memory,
            msrs: saved,
            settled: true,
            exits: None,
        })
    }

    /// The raw vCPU, for benchmarks that compare ftvm's exit path with a
    /// bare KVM_RUN loop.
    pub fn fd_mut(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    /// Counts every exit in `exits` from now on.
    pub fn count_exits(&mut self, exits: IntCounter) {
        self.exits = Some(exits);
    }

    /// The guest's registers and a hash of its memory, now.
    pub fn state_digest(&self) -> Result<StateDigest, RunError> {
        state_digest(&self.fd, &self.memory).map_err(RunError::StateDigest)
    }

    /// Runs the guest (from boot, or on from where it paused) until it
    /// ends, the host stops it, or KVM fails; with `pause_after`, pauses at
    /// the first settled exit boundary at or after that exit: normally just
    /// after it, later only when completing its access made KVM exit again.
    /// With a nonzero `digest_interval`, the source gets a state digest
    /// every that many exits.
    pub fn run(
        &mut self,
        handler: &mut ExitHandler,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        digest_interval: u64,
        pause_after: Option<u64>,
    ) -> Result<Ran, RunError> {
        if !handler.started()
            && let Flow::End(end) = handler.boot(source).map_err(RunError::Core)?
        {
            return Ok(Ran::Ended(end));
        }
        loop {
            // Pausing enters KVM only to complete the last exit's access:
            // with immediate_exit set it returns EINTR without running the
            // guest (or, rarely, the exit the completion itself makes).
            let pausing = pause_after.is_some_and(|exit| handler.exits() >= exit);
            self.fd.set_kvm_immediate_exit(u8::from(pausing));
            let exit = self.fd.run();
            self.settled = exit.is_err();
            let access = match exit {
                Ok(VcpuExit::IoIn(port, data)) => Access::PioIn { port, data },
                Ok(VcpuExit::IoOut(port, data)) => Access::PioOut { port, data },
                Ok(VcpuExit::MmioRead(addr, data)) => Access::MmioRead { addr, data },
                Ok(VcpuExit::MmioWrite(addr, data)) => Access::MmioWrite { addr, data },
                Ok(VcpuExit::X86Rdmsr(msr)) => Access::RdMsr {
                    index: msr.index,
                    value: msr.data,
                    fault: msr.error,
                },
                Ok(VcpuExit::X86Wrmsr(msr)) => Access::WrMsr {
                    index: msr.index,
                    value: msr.data,
                    fault: msr.error,
                },
                Ok(VcpuExit::Hlt) => Access::Hlt,
                Ok(VcpuExit::IrqWindowOpen) => Access::IrqWindowOpen,
                Ok(VcpuExit::Shutdown) => Access::Shutdown,
                Ok(VcpuExit::Intr) => continue,
                Ok(VcpuExit::InternalError) => return Err(self.internal_error()),
                Ok(VcpuExit::FailEntry(reason, _)) => return Err(RunError::FailEntry(reason)),
                Ok(other) => return Err(RunError::UnexpectedExit(format!("{other:?}"))),
                Err(error) if error.errno() == libc::EINTR => {
                    // A kick or a pause: it counts nothing and applies nothing.
                    if pausing {
                        return Ok(Ran::Paused);
                    }
                    if let Some(reason) = stop.requested() {
                        return Ok(Ran::Ended(VmEnd::Stopped(reason)));
                    }
                    continue;
                }
                Err(error) => return Err(RunError::Run(error)),
            };
            let completed = match handler.access(access, source).map_err(RunError::Core)? {
                Step::Completed(completed) => completed,
                Step::End(end) => return Ok(Ran::Ended(end)),
            };
            if let Some(exits) = &self.exits {
                exits.inc();
            }
            let regs = self.fd.sync_regs().regs;
            match handler
                .finish(completed, regs.rip, regs.rflags, source, sink)
                .map_err(RunError::Core)?
            {
                Flow::End(end) => return Ok(Ran::Ended(end)),
                Flow::Continue => {}
            }
            let exit = handler.exits();
            if digest_interval != 0 && exit.is_multiple_of(digest_interval) {
                let digest = self.state_digest()?;
                source
                    .state(exit, digest)
                    .map_err(|e| RunError::Core(e.into()))?;
            }
            if let Some(reason) = stop.requested() {
                return Ok(Ran::Ended(VmEnd::Stopped(reason)));
            }
            self.inject(handler)?;
        }
    }

    /// Decides injection from PIC state at a counted exit: inject when KVM
    /// says the guest can take an interrupt here, else leave it pending
    /// until a later counted exit where it can. The interrupt-window exit is
    /// never requested: on our hosts KVM's emulator reports the window at
    /// points that depend on host scheduling (measured: the same guest got
    /// the window-open exit right after IRET in one run and only at the
    /// next port access in another), so it cannot be an injection point.
    fn inject(&mut self, handler: &mut ExitHandler) -> Result<(), RunError> {
        let run = self.fd.get_kvm_run();
        run.request_interrupt_window = 0;
        if !handler.interrupt_pending() || run.ready_for_interrupt_injection == 0 {
            return Ok(());
        }
        let vector = handler.acknowledge_interrupt();
        trace!(vector, "inject");
        let irq = kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT reads a kvm_interrupt, which `irq` is, and
        // the fd is a vCPU fd.
        let ret = unsafe { ioctl_with_ref(&self.fd, KVM_INTERRUPT(), &irq) };
        if ret < 0 {
            return Err(RunError::Interrupt {
                vector,
                source: kvm_ioctls::Error::last(),
            });
        }
        Ok(())
    }

    fn internal_error(&mut self) -> RunError {
        // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, so `internal`
        // is the union member KVM filled in.
        let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
        if suberror != kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
            return RunError::Internal(suberror);
        }
        RunError::Unemulated(emulation::describe(&self.fd, &self.memory))
    }
}
