//! The machine's state without its memory, and the whole VM's.

use ft_logging::{DiskRequest, Header};
use ftvm_core::exit_handler::CoreState;
use ftvm_core::layout::MAX_MEM_MIB;
use ftvm_core::memory::PAGE_SIZE;
use ftvm_core::platform::PLATFORM_VERSION;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::{self, Kind};
use crate::{PageSet, StateError, VcpuState};

/// Host-side bookkeeping of a fault-tolerant pair at the exit the state
/// was taken, which the deterministic core does not hold. The live
/// transfer fills it; elsewhere it stays empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtState {
    /// Console bytes the primary had released (emitted) so far.
    pub released_console: u64,
    /// Frames the primary had released so far.
    pub released_frames: u64,
    /// Disk requests the guest made that have not completed yet (their
    /// numbers are in the core's state; their operations only here), for
    /// a new backup to issue again should it take over before their
    /// completions reach it.
    pub disk_in_flight: Vec<DiskRequest>,
}

/// The machine between two exits, without its memory: the vCPU, the
/// deterministic core (exit count, exit signature, console digest, every
/// device) and the FT bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    /// The vCPU.
    pub vcpu: VcpuState,
    /// The deterministic core and its devices.
    pub core: CoreState,
    /// The FT bookkeeping (filled by a live transfer).
    pub ft: FtState,
}

impl MachineState {
    /// The exit the state was taken after.
    pub fn exit(&self) -> u64 {
        self.core.exits()
    }

    /// The state in its versioned, checksummed encoding.
    pub fn encode(&self) -> Vec<u8> {
        envelope::encode(Kind::Machine, self)
    }

    /// Decodes a state encoded by [`encode`](Self::encode). Device states
    /// are checked when a machine is built from it.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let state: Self = envelope::decode(Kind::Machine, bytes)?;
        state.vcpu.check()?;
        Ok(state)
    }
}

/// A whole VM: the configuration it was built from (kernel, memory size,
/// command line, devices, CPU model, platform version: a trace's header),
/// its machine state and every page of its memory. A standby needs nothing
/// else to run it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmState {
    /// The configuration, as a log's header.
    pub header: Header,
    /// The vCPU and the core.
    pub machine: MachineState,
    /// Every page of guest memory.
    pub memory: PageSet,
}

impl VmState {
    /// The state in its versioned, checksummed encoding.
    pub fn encode(&self) -> Vec<u8> {
        envelope::encode(Kind::Vm, self)
    }

    /// Decodes a state encoded by [`encode`](Self::encode), and checks its
    /// configuration and pages; device states are checked when a machine
    /// is built from it.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let state: Self = envelope::decode(Kind::Vm, bytes)?;
        check_header(&state.header)?;
        state.machine.vcpu.check()?;
        state.memory.check()?;
        let pages = u64::from(state.header.mem_mib) << 20 >> PAGE_SIZE.trailing_zeros();
        if state.memory.last_page().is_some_and(|last| last >= pages) {
            return Err(StateError::Invalid(format!(
                "pages beyond the VM's {} MiB of RAM",
                state.header.mem_mib
            )));
        }
        Ok(state)
    }
}

/// Refuses a configuration of another platform, whose kernel is not the
/// one it names, or whose memory no VM can have.
pub fn check_header(header: &Header) -> Result<(), StateError> {
    if header.platform != PLATFORM_VERSION {
        return Err(StateError::Platform {
            found: header.platform.clone(),
            ours: PLATFORM_VERSION,
        });
    }
    if <[u8; 32]>::from(Sha256::digest(&header.kernel)) != header.kernel_sha256 {
        return Err(StateError::Invalid(
            "the kernel does not match its SHA-256".into(),
        ));
    }
    if !(1..=MAX_MEM_MIB).contains(&header.mem_mib) {
        return Err(StateError::Invalid(format!(
            "{} MiB of RAM, outside 1..={MAX_MEM_MIB}",
            header.mem_mib
        )));
    }
    Ok(())
}
