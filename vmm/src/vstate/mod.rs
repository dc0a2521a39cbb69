//! The KVM side of the VM: the only code that calls kvm-ioctls.

mod cpuid;
mod emulation;
mod msr_filter;
mod state_digest;
mod vcpu;
mod vm;

pub use cpuid::CpuidError;
pub use ftvm_core::exit_handler::VmEnd;
pub use vcpu::{RunError, Vcpu};
pub use vm::{Vm, VmError};
