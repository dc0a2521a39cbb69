//! The KVM side of the VM: the only code that calls kvm-ioctls.

mod cpuid;
mod emulation;
mod memory_tracker;
mod msr_filter;
mod state_digest;
mod vcpu;
mod vcpu_state;
mod vm;

pub use cpuid::CpuidError;
pub use ftvm_core::exit_handler::VmEnd;
pub use memory_tracker::MemoryTracker;
pub use vcpu::{Ran, RunError, Vcpu};
pub use vcpu_state::VcpuStateError;
pub use vm::{Vm, VmError};
