//! ftvm's virtual machine monitor: the KVM VM and vCPU that run the
//! deterministic core (the `ftvm-core` crate), boot, the host's inputs and
//! outputs, and the fault-tolerant pair.

#![warn(missing_docs)]

pub mod boot;
pub mod exit_status;
pub mod ft;
pub mod host;
pub mod images;
pub mod kernel;
pub mod machine;
pub mod monitor;
pub mod replaying;
pub mod timetravel;
pub mod vm_config;
pub mod vstate;
