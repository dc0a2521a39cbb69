//! A VM built from a validated config, ready to run with any pair of event
//! source and output sink.

use std::sync::Arc;

use ft_logging::{CpuidLeaf, End, EndReason, EventSource, Header, OutputSink};
use sha2::{Digest, Sha256};
use tracing::warn;
use vm_memory::GuestMemoryMmap;

use crate::boot::{self, BootError};
use crate::host::StopSignal;
use crate::vm_config::VmConfig;
use crate::vstate::{Resumed, RunError, Vcpu, Vm, VmEnd, VmError};
use ftvm_core::effect::GuestEnd;
use ftvm_core::exit_handler::ExitHandler;
use ftvm_core::platform::{PLATFORM_VERSION, Platform};

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Boot(#[from] BootError),
}

/// Which CPU the guest gets.
#[derive(Debug, Clone, Copy)]
pub enum Cpu<'a> {
    /// Our model as this host presents it.
    Model,
    /// A recorded model, which this host must be able to present.
    Recorded(&'a [CpuidLeaf]),
}

#[derive(Debug)]
pub struct Machine {
    // The vCPU goes first: it must close before the VM and its memory.
    vcpu: Vcpu,
    handler: ExitHandler,
    cpuid: Vec<CpuidLeaf>,
    // Owned so that the VM and its memory outlive the vCPU.
    vm: Vm,
}

impl Machine {
    /// Creates the VM, loads the kernel and puts the vCPU at its PVH entry.
    pub fn new(config: &VmConfig, cpu: Cpu<'_>) -> Result<Self, MachineError> {
        let vm = Vm::new(config.mem_mib)?;
        let cpuid = match cpu {
            Cpu::Model => vm.cpu_model()?,
            Cpu::Recorded(recorded) => {
                vm.check_cpuid(recorded)?;
                recorded.to_vec()
            }
        };
        boot::load(vm.memory(), &config.kernel.image, &config.guest_cmdline())?;
        let vcpu = vm.create_vcpu(config.pvh.entry, &cpuid)?;
        Ok(Self {
            vcpu,
            handler: ExitHandler::new(Platform::new(config.devices, vm.memory())),
            cpuid,
            vm,
        })
    }

    /// Runs the guest from its entry point until it ends. With a nonzero
    /// `digest_interval` the source gets a state digest every that many exits.
    pub fn run(
        &mut self,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        digest_interval: u64,
    ) -> Result<VmEnd, RunError> {
        self.vcpu
            .run(&mut self.handler, source, sink, stop, digest_interval)
    }

    /// Exit 0: the inputs the guest sees before its first instruction.
    pub fn boot(&mut self, source: &mut dyn EventSource) -> Result<(), RunError> {
        self.vcpu.boot(&mut self.handler, source)
    }

    /// Runs the guest to its next counted exit, which it handles unless
    /// `hold` says otherwise, or to a debug exit (see [`Vcpu::resume`]).
    pub fn resume(
        &mut self,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        digest_interval: u64,
        hold: &mut dyn FnMut(&Vm) -> bool,
    ) -> Result<Resumed, RunError> {
        let vm = &self.vm;
        self.vcpu.resume(
            &mut self.handler,
            source,
            sink,
            stop,
            digest_interval,
            &mut || hold(vm),
        )
    }

    /// The header that, with the events, determines this machine's run.
    pub fn header(&self, config: &VmConfig, digest_interval: u64) -> Header {
        Header {
            platform: PLATFORM_VERSION.to_owned(),
            mem_mib: config.mem_mib,
            cmdline: config.cmdline.clone(),
            kernel_name: config.kernel.name.clone(),
            kernel: config.kernel.image.to_vec(),
            kernel_sha256: Sha256::digest(&config.kernel.image).into(),
            cpuid: self.cpuid.clone(),
            digest_interval,
            disk: config.devices.disk,
            net: config.devices.net,
        }
    }

    /// The end record of a run that ended for `reason` with `status`.
    pub fn end(&self, reason: EndReason, status: u8) -> End {
        // The state is comparable only where the guest itself ended the run,
        // at an exit; a stop or a failure falls between exits.
        let state = match reason {
            EndReason::Stopped(_) | EndReason::Failed(_) => None,
            _ => self
                .vcpu
                .state_digest()
                .inspect_err(|error| warn!(%error, "no final state digest"))
                .ok(),
        };
        End {
            exit: self.handler.exits(),
            signature: self.handler.signature().value(),
            reason,
            status,
            console: self.handler.console(),
            state,
        }
    }

    /// Exits completed so far.
    pub fn exits(&self) -> u64 {
        self.handler.exits()
    }

    /// The vCPU.
    pub fn vcpu(&self) -> &Vcpu {
        &self.vcpu
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestMemoryMmap {
        self.vm.memory()
    }

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// The vCPU, for benchmarks that drive KVM_RUN themselves.
    pub fn vcpu_mut(&mut self) -> &mut Vcpu {
        &mut self.vcpu
    }
}

/// How a run that ended with `result` is recorded.
pub fn end_reason(result: &Result<VmEnd, RunError>) -> EndReason {
    match result {
        Ok(VmEnd::Guest(GuestEnd::Exit(value))) => EndReason::GuestExit(*value),
        Ok(VmEnd::Guest(GuestEnd::Reset)) => EndReason::Reset,
        Ok(VmEnd::Guest(GuestEnd::Halted)) => EndReason::Halted,
        Ok(VmEnd::Guest(GuestEnd::Idle)) => EndReason::Idle,
        Ok(VmEnd::Guest(GuestEnd::TripleFault)) => EndReason::TripleFault,
        Ok(VmEnd::Stopped(reason)) => EndReason::Stopped(*reason),
        Err(error) => EndReason::Failed(error.to_string()),
    }
}
