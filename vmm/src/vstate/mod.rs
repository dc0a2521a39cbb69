//! The KVM side of the VM: the only code that calls kvm-ioctls.

mod cpuid;
mod debug;
mod emulation;
mod memory_tracker;
mod msr_filter;
mod state_digest;
mod vcpu;
mod vcpu_state;
mod vm;

pub use cpuid::CpuidError;
pub use debug::{BREAKPOINT_SLOTS, DebugError, GuestDebug, Registers};
pub use ftvm_core::exit_handler::VmEnd;
pub use memory_tracker::MemoryTracker;
pub use vcpu::{Ran, Resumed, RunError, RunIo, Vcpu};
pub use vcpu_state::VcpuStateError;
pub use vm::{Vm, VmError};
