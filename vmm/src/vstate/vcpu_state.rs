//! The vCPU's state out of KVM and back in, at a settled exit boundary.

use kvm_bindings::{Msrs, kvm_msr_entry};
use vm_state::VcpuState;

use super::Vcpu;

/// Why the vCPU's state cannot be captured or restored.
#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    /// The vCPU is not at a settled exit boundary.
    #[error(
        "the vCPU is not at a settled exit boundary (KVM has not completed its last exit's access)"
    )]
    Unsettled,
    /// KVM would not give out part of the state.
    #[error("cannot read the vCPU's {what}: {source}")]
    Get {
        /// Which part.
        what: &'static str,
        /// The error underneath.
        source: kvm_ioctls::Error,
    },
    /// KVM refused part of the state.
    #[error("KVM refused the vCPU's {what}: {source}")]
    Set {
        /// Which part.
        what: &'static str,
        /// The error underneath.
        source: kvm_ioctls::Error,
    },
    /// KVM refused an MSR of the state.
    #[error("KVM refused MSR {index:#x} of the state")]
    Msr {
        /// The MSR.
        index: u32,
    },
}

fn msr_table(entries: impl Iterator<Item = (u32, u64)>) -> Result<Msrs, VcpuStateError> {
    let entries: Vec<_> = entries
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&entries).map_err(|_| VcpuStateError::Msr {
        index: entries.first().map_or(0, |entry| entry.index),
    })
}

impl Vcpu {
    /// The vCPU's state. Only at a settled boundary: after a pause, a stop,
    /// or before the first run.
    pub fn capture(&self) -> Result<VcpuState, VcpuStateError> {
        if !self.settled {
            return Err(VcpuStateError::Unsettled);
        }
        let get = |what| move |source| VcpuStateError::Get { what, source };
        let mut msrs = msr_table(self.msrs.iter().map(|&index| (index, 0)))?;
        let read = self.fd.get_msrs(&mut msrs).map_err(get("MSRs"))?;
        if read != self.msrs.len() {
            return Err(VcpuStateError::Msr {
                index: self.msrs[read],
            });
        }
        Ok(VcpuState {
            regs: self.fd.get_regs().map_err(get("registers"))?,
            sregs: self.fd.get_sregs().map_err(get("system registers"))?,
            xsave: VcpuState::xsave_bytes(&self.fd.get_xsave().map_err(get("XSAVE area"))?),
            xcrs: self.fd.get_xcrs().map_err(get("XCRs"))?,
            debugregs: self.fd.get_debug_regs().map_err(get("debug registers"))?,
            events: self.fd.get_vcpu_events().map_err(get("pending events"))?,
            mp_state: self.fd.get_mp_state().map_err(get("MP state"))?,
            msrs: msrs.as_slice().iter().map(|e| (e.index, e.data)).collect(),
        })
    }

    /// Puts the vCPU in `state`, in the order KVM needs: the MSRs (the
    /// TSC among them) before the pending events, which an injected
    /// interrupt is one of. A refusal leaves the vCPU half set: drop it.
    pub fn restore(&mut self, state: &VcpuState) -> Result<(), VcpuStateError> {
        let set = |what| move |source| VcpuStateError::Set { what, source };
        self.fd
            .set_mp_state(state.mp_state)
            .map_err(set("MP state"))?;
        self.fd.set_regs(&state.regs).map_err(set("registers"))?;
        self.fd
            .set_sregs(&state.sregs)
            .map_err(set("system registers"))?;
        // SAFETY: the area is the legacy 4 KiB one (KVM_CAP_XSAVE2's larger
        // area is enabled only with AMX permission, which ftvm never asks
        // for), so KVM reads no more than the kvm_xsave it is given.
        unsafe { self.fd.set_xsave(&state.kvm_xsave()) }.map_err(set("XSAVE area"))?;
        self.fd.set_xcrs(&state.xcrs).map_err(set("XCRs"))?;
        self.fd
            .set_debug_regs(&state.debugregs)
            .map_err(set("debug registers"))?;
        let msrs = msr_table(state.msrs.iter().copied())?;
        let written = self.fd.set_msrs(&msrs).map_err(set("MSRs"))?;
        if let Some(&(index, _)) = state.msrs.get(written) {
            return Err(VcpuStateError::Msr { index });
        }
        self.fd
            .set_vcpu_events(&state.events)
            .map_err(set("pending events"))?;
        self.settled = true;
        Ok(())
    }
}
