//! A VM built from a validated config, ready to run with any pair of event
//! source and output sink.

use std::sync::Arc;

use ft_logging::{EventSource, OutputSink};

use crate::boot::{self, BootError};
use crate::exit_handler::ExitHandler;
use crate::host::StopSignal;
use crate::vm_config::VmConfig;
use crate::vstate::{RunError, Vcpu, Vm, VmEnd, VmError};

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Boot(#[from] BootError),
}

#[derive(Debug)]
pub struct Machine {
    // The vCPU goes first: it must close before the VM and its memory.
    vcpu: Vcpu,
    // Held so that the VM and its memory outlive the vCPU.
    _vm: Vm,
}

impl Machine {
    /// Creates the VM, loads the kernel and puts the vCPU at its PVH entry.
    pub fn new(config: &VmConfig) -> Result<Self, MachineError> {
        let vm = Vm::new(config.mem_mib)?;
        boot::load(vm.memory(), &config.kernel.image, &config.cmdline)?;
        let vcpu = vm.create_vcpu(config.pvh.entry)?;
        Ok(Self { vcpu, _vm: vm })
    }

    /// Runs the guest from its entry point until it ends.
    pub fn run(
        &mut self,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
    ) -> Result<VmEnd, RunError> {
        let mut handler = ExitHandler::new();
        self.vcpu.run(&mut handler, source, sink, stop)
    }

    /// The vCPU, for benchmarks that drive KVM_RUN themselves.
    pub fn vcpu_mut(&mut self) -> &mut Vcpu {
        &mut self.vcpu
    }
}
