//! The vCPU: its initial state, the loop that runs it through the exit
//! handler, and interrupt injection.

use std::sync::Arc;

use ft_logging::{EventSource, OutputSink, StateDigest};
use kvm_bindings::{
    CpuId, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, Msrs, kvm_debug_exit_arch, kvm_debugregs,
    kvm_enable_cap, kvm_interrupt, kvm_msr_entry, kvm_vcpu_events,
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

/// Where a run's inputs come from and its outputs go, for one
/// [`Vcpu::resume`]; every `digest_interval` exits (when nonzero) the
/// source gets a state digest.
pub struct RunIo<'a> {
    /// The events' source.
    pub source: &'a mut dyn EventSource,
    /// Where outputs go.
    pub sink: &'a mut dyn OutputSink,
    /// The host's request to stop.
    pub stop: &'a Arc<StopSignal>,
    /// Exits between state digests, or 0.
    pub digest_interval: u64,
}

impl std::fmt::Debug for RunIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunIo")
            .field("digest_interval", &self.digest_interval)
            .finish_non_exhaustive()
    }
}

/// What one [`Vcpu::resume`] ended with.
#[derive(Debug, Clone, Copy)]
pub enum Resumed {
    /// A counted exit was handled.
    Exit,
    /// A debug exit (a single step or a hardware breakpoint).
    Debug(kvm_debug_exit_arch),
    /// A platform exit left unhandled, as asked.
    Held,
    /// At a settled exit boundary, as asked.
    Paused,
    /// The run ended.
    End(VmEnd),
}

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
    /// A checkpoint of the VM's state could not be taken.
    #[error("cannot take a checkpoint: {0}")]
    Checkpoint(String),
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
        if let Some(end) = self.boot(handler, source)? {
            return Ok(Ran::Ended(end));
        }
        loop {
            let pause = pause_after.is_some_and(|exit| handler.exits() >= exit);
            let io = RunIo {
                source: &mut *source,
                sink: &mut *sink,
                stop,
                digest_interval,
            };
            match self.resume(handler, io, pause, &mut || false)? {
                Resumed::Exit => {}
                Resumed::Paused => return Ok(Ran::Paused),
                Resumed::End(end) => return Ok(Ran::Ended(end)),
                // Nothing asked KVM for debug exits, or held an exit.
                other @ (Resumed::Debug(_) | Resumed::Held) => {
                    return Err(RunError::UnexpectedExit(format!("{other:?}")));
                }
            }
        }
    }

    /// Exit 0, the inputs the guest sees before its first instruction,
    /// unless the run has started (or was restored) already; the end of the
    /// run when it ends there.
    pub fn boot(
        &mut self,
        handler: &mut ExitHandler,
        source: &mut dyn EventSource,
    ) -> Result<Option<VmEnd>, RunError> {
        if handler.started() {
            return Ok(None);
        }
        match handler.boot(source).map_err(RunError::Core)? {
            Flow::End(end) => Ok(Some(end)),
            Flow::Continue => Ok(None),
        }
    }

    /// One KVM_RUN: to the next counted exit, which it handles (events,
    /// access, digests, injection), or to a debug exit, which is not a
    /// platform exit (it counts nothing and changes no device). With
    /// `pause`, it only completes the last exit's access and pauses at the
    /// settled boundary (or, rarely, handles the exit the completion made).
    /// When `hold` says so at a platform exit, the exit is left unhandled
    /// (`Held`), for a debugger to take the guest back to before it.
    pub fn resume(
        &mut self,
        handler: &mut ExitHandler,
        io: RunIo<'_>,
        pause: bool,
        hold: &mut dyn FnMut() -> bool,
    ) -> Result<Resumed, RunError> {
        let RunIo {
            source,
            sink,
            stop,
            digest_interval,
        } = io;
        let access = loop {
            // Pausing enters KVM only to complete the last exit's access:
            // with immediate_exit set it returns EINTR without running the
            // guest (or, rarely, the exit the completion itself makes).
            self.fd.set_kvm_immediate_exit(u8::from(pause));
            let exit = self.fd.run();
            self.settled = exit.is_err();
            match exit {
                Ok(VcpuExit::IoIn(port, data)) => break Access::PioIn { port, data },
                Ok(VcpuExit::IoOut(port, data)) => break Access::PioOut { port, data },
                Ok(VcpuExit::MmioRead(addr, data)) => break Access::MmioRead { addr, data },
                Ok(VcpuExit::MmioWrite(addr, data)) => break Access::MmioWrite { addr, data },
                Ok(VcpuExit::X86Rdmsr(msr)) => {
                    break Access::RdMsr {
                        index: msr.index,
                        value: msr.data,
                        fault: msr.error,
                    };
                }
                Ok(VcpuExit::X86Wrmsr(msr)) => {
                    break Access::WrMsr {
                        index: msr.index,
                        value: msr.data,
                        fault: msr.error,
                    };
                }
                Ok(VcpuExit::Hlt) => break Access::Hlt,
                Ok(VcpuExit::IrqWindowOpen) => break Access::IrqWindowOpen,
                Ok(VcpuExit::Shutdown) => break Access::Shutdown,
                Ok(VcpuExit::Debug(debug)) => return Ok(Resumed::Debug(debug)),
                Ok(VcpuExit::Intr) => continue,
                Ok(VcpuExit::InternalError) => return Err(self.internal_error()),
                Ok(VcpuExit::FailEntry(reason, _)) => return Err(RunError::FailEntry(reason)),
                Ok(other) => return Err(RunError::UnexpectedExit(format!("{other:?}"))),
                Err(error) if error.errno() == libc::EINTR => {
                    // A kick or a pause: it counts nothing and applies nothing.
                    if pause {
                        return Ok(Resumed::Paused);
                    }
                    if let Some(reason) = stop.requested() {
                        return Ok(Resumed::End(VmEnd::Stopped(reason)));
                    }
                    continue;
                }
                Err(error) => return Err(RunError::Run(error)),
            }
        };
        if hold() {
            return Ok(Resumed::Held);
        }
        let completed = match handler.access(access, source).map_err(RunError::Core)? {
            Step::Completed(completed) => completed,
            Step::End(end) => return Ok(Resumed::End(end)),
        };
        if let Some(exits) = &self.exits {
            exits.inc();
        }
        let regs = self.fd.sync_regs().regs;
        match handler
            .finish(completed, regs.rip, regs.rflags, source, sink)
            .map_err(RunError::Core)?
        {
            Flow::End(end) => return Ok(Resumed::End(end)),
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
            return Ok(Resumed::End(VmEnd::Stopped(reason)));
        }
        self.inject(handler)?;
        Ok(Resumed::Exit)
    }

    /// Whether no access of the last exit waits for KVM_RUN to complete it.
    pub fn settled(&self) -> bool {
        self.settled
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
