//! ftvm's virtual machine monitor: KVM VM and vCPU, the deterministic PC
//! platform, boot, and the deterministic core between inputs and outputs.

pub mod boot;
pub mod devices;
pub mod exit_handler;
pub mod exit_status;
pub mod ft;
pub mod host;
pub mod images;
pub mod kernel;
pub mod machine;
pub mod platform;
pub mod vm_config;
pub mod vstate;
