//! Every way a command can fail, and the documented exit status of each.

use std::path::PathBuf;

use ft_logging::StopReason;
use ft_logging::channel::ChannelError;
use replay::TraceError;
use shared_disk::{ArbiterError, ImageError};
use vmm::exit_status::{
    self, ARBITER_FAILURE, GDB_PROTOCOL, HOST_IO_FAILURE, INCOMPATIBLE_HOST, INVALID_DISK,
    INVALID_KERNEL, INVALID_TRACE, KERNEL_NOT_FOUND, KVM_FAILURE, NETWORK_FAILURE, NOT_LIVE,
    PAIRING_FAILURE, UNREADABLE_KERNEL, USAGE,
};
use vmm::host::TapError;
use vmm::kernel::KernelError;
use vmm::machine::{MachineError, RestoreError};
use vmm::monitor::MonitorError;
use vmm::timetravel::ReplayError;
use vmm::timetravel::gdb::GdbError;
use vmm::vm_config::ConfigError;
use vmm::vstate::{DebugError, RunError, VmError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot set up the host side: {0}")]
    Host(#[source] std::io::Error),
    #[error("{0}")]
    Trace(#[from] TraceError),
    #[error("the trace's VM configuration is invalid: {0}")]
    TraceConfig(#[source] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("cannot write to stdout: {0}")]
    Console(#[source] std::io::Error),
    #[error("{0}")]
    Arbiter(#[from] ArbiterError),
    #[error("{0}")]
    Disk(#[from] ImageError),
    #[error("{0}")]
    Tap(#[from] TapError),
    #[error("{0}")]
    Pairing(#[from] ChannelError),
    /// This side may not go live: the go-live flag is someone else's.
    #[error("{0}")]
    NotLive(String),
    /// A standby that could not take the live side's VM, with the status
    /// that says why (another disk, another platform, a lost live side).
    #[error("standby: {message}")]
    Standby { message: String, status: u8 },
    /// A signal (or the console's quit) ended a wait before the guest ran.
    #[error("{reason} while {waiting}")]
    Stopped {
        reason: StopReason,
        waiting: &'static str,
    },
    #[error("the trace was recorded on platform `{recorded}`; this ftvm provides `{ours}`")]
    Platform {
        recorded: String,
        ours: &'static str,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the guest for the debugger: {0}")]
    Debug(#[from] DebugError),
    #[error("{0}")]
    Gdb(GdbError),
    /// A checkpoint of a replay could not be taken or restored.
    #[error(transparent)]
    Checkpoint(ReplayError),
}

impl From<GdbError> for CliError {
    fn from(error: GdbError) -> Self {
        match error {
            GdbError::Replay(error) => error.into(),
            other => Self::Gdb(other),
        }
    }
}

impl From<ReplayError> for CliError {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::Trace(error) => Self::Trace(error),
            ReplayError::Config(error) => Self::TraceConfig(error),
            ReplayError::Platform { recorded, ours } => Self::Platform { recorded, ours },
            ReplayError::Machine(error) => Self::Machine(error),
            ReplayError::Run(error) => Self::Run(error),
            ReplayError::Debug(error) => Self::Debug(error),
            ReplayError::Vm(error) => Self::Machine(MachineError::Vm(error)),
            ReplayError::Restore(RestoreError::Machine(error)) => Self::Machine(error),
            other @ (ReplayError::Restore(_)
            | ReplayError::Capture(_)
            | ReplayError::Pages(_)
            | ReplayError::InvalidCheckpoint { .. }) => Self::Checkpoint(other),
        }
    }
}

impl CliError {
    pub fn status(&self) -> u8 {
        match self {
            Self::Config(ConfigError::Kernel(KernelError::NotFound { .. })) => KERNEL_NOT_FOUND,
            Self::Config(ConfigError::Kernel(
                KernelError::Unreadable { .. } | KernelError::NotAFile { .. },
            )) => UNREADABLE_KERNEL,
            Self::Config(ConfigError::InvalidKernel { .. }) => INVALID_KERNEL,
            Self::Monitor(MonitorError::Thread(_)) => HOST_IO_FAILURE,
            Self::Config(_) | Self::Usage(_) | Self::Monitor(_) => USAGE,
            Self::Pairing(
                ChannelError::Key { .. } | ChannelError::Timing { .. } | ChannelError::Bind { .. },
            ) => USAGE,
            Self::Pairing(_) => PAIRING_FAILURE,
            Self::Arbiter(_) => ARBITER_FAILURE,
            Self::Disk(_) => INVALID_DISK,
            Self::Tap(_) => NETWORK_FAILURE,
            Self::NotLive(_) => NOT_LIVE,
            Self::Standby { status, .. } => *status,
            Self::Stopped { reason, .. } => reason.exit_status(),
            Self::Machine(MachineError::Vm(VmError::Cpuid(_))) | Self::Platform { .. } => {
                INCOMPATIBLE_HOST
            }
            Self::Machine(MachineError::Vm(_)) => KVM_FAILURE,
            Self::Machine(MachineError::Boot(_)) => INVALID_KERNEL,
            Self::Run(error) => exit_status::of_run_error(error),
            Self::Host(_) | Self::Console(_) | Self::Output { .. } => HOST_IO_FAILURE,
            Self::Trace(TraceError::Create { .. } | TraceError::Write { .. }) => HOST_IO_FAILURE,
            Self::Debug(_) => KVM_FAILURE,
            Self::Gdb(GdbError::Protocol(_)) => GDB_PROTOCOL,
            // Like `--listen` and `--metrics`: the user's address, not the host, failed.
            Self::Gdb(GdbError::Listen { .. }) => USAGE,
            Self::Checkpoint(ReplayError::Restore(_) | ReplayError::InvalidCheckpoint { .. }) => {
                INVALID_TRACE
            }
            Self::Checkpoint(_) => KVM_FAILURE,
            Self::Gdb(_) => HOST_IO_FAILURE,
            Self::Trace(_) | Self::TraceConfig(_) => INVALID_TRACE,
        }
    }
}
