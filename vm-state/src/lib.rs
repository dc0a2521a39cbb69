//! The whole state of an ftvm VM as data, for live transfer to a standby
//! (re-protection) and for checkpoints in traces (time-travel debugging).
//!
//! # What a state holds
//!
//! - [`VcpuState`]: the vCPU as KVM gives it out (registers, x87/SSE,
//!   debug registers, pending events, MSRs with the TSC).
//! - [`CoreState`](ftvm_core::exit_handler::CoreState): the deterministic
//!   core: exits completed, exit signature, console digest, and every
//!   device (`ftvm_core::state` lists them), virtual time among them.
//! - [`FtState`]: the FT pair's host-side bookkeeping (released output,
//!   disk requests in flight), filled by the live transfer.
//! - [`PageSet`]: guest memory pages, a full set or a subset.
//! - [`MachineState`] = vCPU + core + FT bookkeeping; [`VmState`] = the
//!   configuration (a trace [`Header`](ft_logging::Header): kernel, memory
//!   size, command line, devices, CPU model, platform version) + a machine
//!   state + all of memory.
//!
//! # Capture point
//!
//! A state is taken at an exit boundary: after exit k is finished (its
//! events applied, its access completed, its digests folded, injection
//! decided) and before the guest runs again, with the access KVM still had
//! pending completed by an immediate-exit KVM_RUN. `vmm::machine::Machine`
//! pauses there (`run_until`) and captures (`capture`, `capture_vm`).
//!
//! # Encoding
//!
//! Each of [`VmState`], [`MachineState`] and [`PageSet`] has `encode()`
//! and `decode(&[u8])`. The bytes are an envelope (magic, [`FORMAT_VERSION`],
//! kind, length, CRC32C; see [`envelope`]) around postcard, and carry the
//! platform version. `decode` never panics: a truncated, corrupted, other
//! version or other platform state is a [`StateError`]
//! ([`is_incompatible`](StateError::is_incompatible) tells 117 from 115).
//! Device states are checked when a machine is built from them
//! (`from_state`), before anything of the state is applied to a VM.
//!
//! # Restoring
//!
//! `vmm::machine::Machine::restore(&VmState)` builds a VM from a whole
//! state. A standby receiving memory in rounds builds one with
//! `Machine::prepare(&Header)`, applies each [`PageSet`] with
//! `Machine::apply_pages`, then the final [`MachineState`] with
//! `Machine::apply_state`.
//!
//! # Dirty pages
//!
//! `vmm::vstate::MemoryTracker` (from `Machine::memory_tracker`) turns on
//! KVM's dirty log and reports, through [`DirtyPages`], the pages dirtied
//! since its last call: those the guest wrote (KVM's log) and those the
//! VMM wrote (the guest RAM's own bitmap, `ftvm_core::memory`). A
//! [`PageSet::capture`] of them is the next pre-copy round or incremental
//! checkpoint.

#![warn(missing_docs)]

pub mod envelope;
mod error;
mod machine;
mod pages;
mod vcpu;

pub use envelope::FORMAT_VERSION;
pub use error::StateError;
pub use machine::{FtState, MachineState, VmState, check_header};
pub use pages::{DirtyPages, PageSet};
pub use vcpu::{VcpuState, XSAVE_BYTES};
