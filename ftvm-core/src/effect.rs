//! What a guest's accesses ask of the machine beyond its devices' own
//! state: outputs, and the end of the VM. Devices produce these; the exit
//! handler folds and emits them.

use ft_logging::DiskRequest;

/// How the VM ended, seen from the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEnd {
    /// The guest wrote this byte to the exit port.
    Exit(u8),
    /// The guest reset the machine through the i8042.
    Reset,
    /// The guest halted with interrupts disabled.
    Halted,
    /// The guest halted with interrupts enabled and nothing can ever wake it.
    Idle,
    /// The guest triple-faulted.
    TripleFault,
}

/// What a guest access asks of the machine beyond the devices' own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A byte the guest transmitted on its console.
    Console(u8),
    /// A request of the guest's disk.
    Disk(DiskRequest),
    /// A frame the guest transmitted.
    Net(Vec<u8>),
    /// The guest ended the VM.
    End(GuestEnd),
}
