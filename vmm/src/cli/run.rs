//! `ftvm run`: a guest with its console on this terminal.

use std::sync::Arc;

use vmm::exit_handler::CoreError;
use vmm::exit_status::{
    self, HOST_IO_FAILURE, INVALID_KERNEL, KERNEL_NOT_FOUND, KVM_FAILURE, UNEMULATED_INSTRUCTION,
    UNREADABLE_KERNEL, USAGE,
};
use vmm::host::{self, LiveSource, StdoutSink, StopSignal, VcpuKicker, VirtualClock};
use vmm::kernel::KernelError;
use vmm::machine::{Machine, MachineError};
use vmm::vm_config::{ConfigError, VmConfig};
use vmm::vstate::{RunError, VmEnd};

use super::VmArgs;

#[derive(Debug, thiserror::Error)]
pub enum RunCommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot set up the host side: {0}")]
    Host(#[source] std::io::Error),
}

impl RunCommandError {
    pub fn status(&self) -> u8 {
        match self {
            Self::Config(ConfigError::Kernel(KernelError::NotFound { .. })) => KERNEL_NOT_FOUND,
            Self::Config(ConfigError::Kernel(KernelError::Unreadable { .. })) => UNREADABLE_KERNEL,
            Self::Config(ConfigError::InvalidKernel { .. }) => INVALID_KERNEL,
            Self::Config(_) => USAGE,
            Self::Machine(MachineError::Vm(_)) => KVM_FAILURE,
            Self::Machine(MachineError::Boot(_)) => INVALID_KERNEL,
            Self::Run(RunError::Unemulated(_)) => UNEMULATED_INSTRUCTION,
            Self::Run(RunError::Core(CoreError::Sink(_))) | Self::Host(_) => HOST_IO_FAILURE,
            Self::Run(_) => KVM_FAILURE,
        }
    }
}

pub fn run(args: &VmArgs) -> Result<u8, RunCommandError> {
    let config = VmConfig::new(&args.kernel, args.mem_mib, &args.cmdline)?;
    let mut machine = Machine::new(&config)?;

    let stop = Arc::new(StopSignal::default());
    let kicker = VcpuKicker::for_current_thread().map_err(|e| RunCommandError::Host(e.into()))?;
    let (input_tx, input_rx) = crossbeam_channel::unbounded();
    host::watch_signals(stop.clone(), input_tx.clone(), kicker.clone())
        .map_err(RunCommandError::Host)?;
    let terminal = host::spawn_stdin_reader(input_tx, stop.clone(), kicker.clone())
        .map_err(RunCommandError::Host)?;

    let mut source = LiveSource::new(input_rx, stop.clone(), VirtualClock::start());
    let mut sink = StdoutSink::new();
    let result = machine.run(&mut source, &mut sink, &stop);
    kicker.done();
    drop(terminal);
    let end = result?;
    if let VmEnd::Stopped(reason) = end {
        eprintln!("ftvm: {reason}");
    }
    Ok(exit_status::of_end(end))
}
