//! ftvm's virtual machine monitor: KVM VM and vCPU, the deterministic PC
//! platform, boot, and the deterministic core between inputs and outputs.

pub mod devices;
pub mod images;
