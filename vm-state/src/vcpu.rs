//! The vCPU's state as KVM gives it out and takes it back.

use kvm_bindings::{
    kvm_debugregs, kvm_mp_state, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use serde::{Deserialize, Serialize};

use crate::StateError;

/// Bytes of the legacy KVM_GET_XSAVE area: x87, SSE and the XSAVE header;
/// our CPU model offers no XSAVE features beyond those.
pub const XSAVE_BYTES: usize = 4096;
/// KVM takes at most this many MSRs in one call.
const MAX_MSRS: usize = 256;

/// The one vCPU between two exits, with any pending operation of the
/// last exit completed (see `vmm::machine`): general and system registers,
/// x87/SSE state (the XSAVE area and XCRs), debug registers, pending events
/// (an injected interrupt, an exception, the interrupt shadow, NMI), the
/// multiprocessing state, and every MSR KVM saves for the guest, the TSC
/// among them. There is no in-kernel irqchip, so no LAPIC state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcpuState {
    /// The general registers.
    pub regs: kvm_regs,
    /// The system registers.
    pub sregs: kvm_sregs,
    /// The KVM_GET_XSAVE area.
    #[serde(with = "serde_bytes")]
    pub xsave: Vec<u8>,
    /// The extended control registers.
    pub xcrs: kvm_xcrs,
    /// The debug registers.
    pub debugregs: kvm_debugregs,
    /// Pending events: an injected interrupt or exception, the interrupt shadow, NMI.
    pub events: kvm_vcpu_events,
    /// The multiprocessing state.
    pub mp_state: kvm_mp_state,
    /// (index, value) of each MSR.
    pub msrs: Vec<(u32, u64)>,
}

impl VcpuState {
    /// The XSAVE area as KVM takes it.
    pub fn kvm_xsave(&self) -> kvm_xsave {
        let mut xsave = kvm_xsave::default();
        for (word, bytes) in xsave.region.iter_mut().zip(self.xsave.chunks_exact(4)) {
            *word = u32::from_ne_bytes(bytes.try_into().expect("4 bytes"));
        }
        xsave
    }

    /// The XSAVE area as KVM gave it.
    pub fn xsave_bytes(xsave: &kvm_xsave) -> Vec<u8> {
        xsave
            .region
            .iter()
            .flat_map(|word| word.to_ne_bytes())
            .collect()
    }

    pub(crate) fn check(&self) -> Result<(), StateError> {
        if self.xsave.len() != XSAVE_BYTES {
            return Err(StateError::Invalid(format!(
                "an XSAVE area of {} bytes, not {XSAVE_BYTES}",
                self.xsave.len()
            )));
        }
        if self.msrs.len() > MAX_MSRS {
            return Err(StateError::Invalid(format!(
                "{} MSRs, more than KVM takes",
                self.msrs.len()
            )));
        }
        Ok(())
    }
}
