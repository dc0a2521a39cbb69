//! The KVM side of the VM: the only code that calls kvm-ioctls.

mod cpuid;
mod debug;
mod emulation;
mod msr_filter;
mod state_digest;
mod vcpu;
mod vm;

pub use cpuid::CpuidError;
pub use debug::{BREAKPOINT_SLOTS, DebugError, GuestDebug, Registers, VcpuSnapshot};
pub use vcpu::{Resumed, RunError, Vcpu, VmEnd};
pub use vm::{Vm, VmError};
