//! The records of ftvm's log: what a trace file holds after its header, and
//! what the logging channel carries.

use serde::{Deserialize, Serialize};

use crate::{DiskInfo, Event, NetInfo, StopReason};

/// Version of the record and header encoding; a change bumps it. Version
/// 3 added the checkpoint records.
pub const FORMAT_VERSION: u32 = 3;

/// One CPUID leaf as presented to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuidLeaf {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Everything a guest can observe of its platform before the first event:
/// with the events, it determines the whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The version of ftvm's platform (devices and their behaviour).
    pub platform: String,
    pub mem_mib: u32,
    pub cmdline: String,
    pub kernel_name: String,
    pub kernel: Vec<u8>,
    /// SHA-256 of `kernel`.
    pub kernel_sha256: [u8; 32],
    pub cpuid: Vec<CpuidLeaf>,
    /// Exits between state digests; 0 when there are none.
    pub digest_interval: u64,
    /// The block device, if the guest has one.
    pub disk: Option<DiskInfo>,
    /// The network card, if the guest has one.
    pub net: Option<NetInfo>,
}

/// An output stream of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Console,
}

/// The running digest of one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamDigest {
    /// Bytes emitted so far.
    pub bytes: u64,
    /// Hash of all of them, in order.
    pub digest: u64,
}

/// A digest of the guest's state after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateDigest {
    /// Hash of the vCPU's general and system registers.
    pub registers: u64,
    /// Hash of guest memory.
    pub memory: u64,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The guest wrote this byte to the exit port.
    GuestExit(u8),
    /// The guest reset the machine.
    Reset,
    /// The guest halted with interrupts off.
    Halted,
    /// The guest halted with nothing left to wake it.
    Idle,
    TripleFault,
    /// The host stopped the run.
    Stopped(StopReason),
    /// ftvm failed; the message says how.
    Failed(String),
}

/// The last record of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Exits completed.
    pub exit: u64,
    /// The exit signature after the last exit.
    pub signature: u64,
    pub reason: EndReason,
    /// ftvm's exit status for this end.
    pub status: u8,
    pub console: StreamDigest,
    /// The state when the guest ended by itself; none when the run was
    /// stopped or failed between exits, where the state is not comparable.
    pub state: Option<StateDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An input applied at exit `exit`; `signature` is the low half of the
    /// exit signature after that exit.
    Event {
        exit: u64,
        signature: u32,
        event: Event,
    },
    /// The digest of an output stream after exit `exit`.
    Output {
        exit: u64,
        stream: Stream,
        digest: StreamDigest,
    },
    /// The guest's state after exit `exit`.
    State {
        exit: u64,
        digest: StateDigest,
    },
    /// Pages of the checkpoint after exit `exit` (an encoded
    /// `vm_state::PageSet`); a checkpoint's pages may take several of these
    /// records, all before its [`Record::Checkpoint`]. Trace files only.
    CheckpointPages {
        exit: u64,
        pages: Vec<u8>,
    },
    /// The checkpoint after exit `exit`, closing its pages: the machine
    /// state (an encoded `vm_state::MachineState`); `whole` when its pages
    /// are all of memory, else those changed since the previous checkpoint.
    /// Its encoding holds the decoder's state, so a reader may start at it.
    /// Trace files only.
    Checkpoint {
        exit: u64,
        whole: bool,
        machine: Vec<u8>,
    },
    End(End),
}

impl Record {
    /// The exit the record belongs to.
    pub fn exit(&self) -> u64 {
        match self {
            Record::Event { exit, .. }
            | Record::Output { exit, .. }
            | Record::State { exit, .. }
            | Record::CheckpointPages { exit, .. }
            | Record::Checkpoint { exit, .. } => *exit,
            Record::End(end) => end.exit,
        }
    }

    /// A part of a checkpoint, which only a seeking reader looks at.
    pub fn is_checkpoint(&self) -> bool {
        matches!(
            self,
            Record::CheckpointPages { .. } | Record::Checkpoint { .. }
        )
    }
}
