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
    /// The leaf.
    pub function: u32,
    /// The subleaf.
    pub index: u32,
    /// KVM's flags for the entry.
    pub flags: u32,
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Everything a guest can observe of its platform before the first event:
/// with the events, it determines the whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The version of ftvm's platform (devices and their behaviour).
    pub platform: String,
    /// Guest RAM in MiB.
    pub mem_mib: u32,
    /// The guest's command line, as given (before the device words).
    pub cmdline: String,
    /// The kernel's name, as given to `--kernel`.
    pub kernel_name: String,
    /// The kernel image itself.
    pub kernel: Vec<u8>,
    /// SHA-256 of `kernel`.
    pub kernel_sha256: [u8; 32],
    /// The CPU model the guest sees.
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
    /// The guest's console (COM1).
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
    /// The guest triple-faulted.
    TripleFault,
    /// The host stopped the run.
    Stopped(StopReason),
    /// ftvm failed; the message says how.
    Failed(String),
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::GuestExit(value) => write!(f, "the guest exited with {value}"),
            EndReason::Reset => f.write_str("the guest reset the machine"),
            EndReason::Halted => f.write_str("the guest halted with interrupts off"),
            EndReason::Idle => f.write_str("the guest halted with nothing left to wake it"),
            EndReason::TripleFault => f.write_str("the guest triple-faulted"),
            EndReason::Stopped(stop) => write!(f, "stopped: {stop}"),
            EndReason::Failed(message) => write!(f, "ftvm failed: {message}"),
        }
    }
}

/// The last record of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Exits completed.
    pub exit: u64,
    /// The exit signature after the last exit.
    pub signature: u64,
    /// Why the run ended.
    pub reason: EndReason,
    /// ftvm's exit status for this end.
    pub status: u8,
    /// The console's digest at the end.
    pub console: StreamDigest,
    /// The state when the guest ended by itself; none when the run was
    /// stopped or failed between exits, where the state is not comparable.
    pub state: Option<StateDigest>,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An input applied at exit `exit`; `signature` is the low half of the
    /// exit signature after that exit.
    Event {
        /// The exit it is applied at.
        exit: u64,
        /// The low 32 bits of the exit signature after the exit.
        signature: u32,
        /// The input.
        event: Event,
    },
    /// The digest of an output stream after exit `exit`.
    Output {
        /// The exit it was taken after.
        exit: u64,
        /// Which stream.
        stream: Stream,
        /// Its digest then.
        digest: StreamDigest,
    },
    /// The guest's state after exit `exit`.
    State {
        /// The exit it was taken after.
        exit: u64,
        /// The registers' and memory's digest then.
        digest: StateDigest,
    },
    /// Pages of the checkpoint after exit `exit` (an encoded
    /// `vm_state::PageSet`); a checkpoint's pages may take several of these
    /// records, all before its [`Record::Checkpoint`]. Trace files only.
    CheckpointPages {
        /// The exit the checkpoint follows.
        exit: u64,
        /// The encoded pages.
        pages: Vec<u8>,
    },
    /// The checkpoint after exit `exit`, closing its pages: the machine
    /// state (an encoded `vm_state::MachineState`); `whole` when its pages
    /// are all of memory, else those changed since the previous checkpoint.
    /// Its encoding holds the decoder's state, so a reader may start at it.
    /// Trace files only.
    Checkpoint {
        /// The exit the checkpoint follows.
        exit: u64,
        /// Its pages are all of memory.
        whole: bool,
        /// The encoded machine state.
        machine: Vec<u8>,
    },
    /// The end of the run, last.
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
