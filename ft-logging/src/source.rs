use std::fmt;

use crate::{Event, ExitSignature};

/// What the deterministic core needs, and can accept, at one exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitQuery {
    /// The exit's number; exit 0 is boot, before the first instruction.
    pub exit: u64,
    /// The access at this exit reads a clock (PIT, CMOS), so a fresh time
    /// sample must come first.
    pub needs_time: bool,
    /// The guest halted with interrupts enabled and nothing is pending: the
    /// source blocks until some event is due.
    pub halted: bool,
    /// When the next timer interrupt is due, in virtual nanoseconds.
    pub timer_deadline_ns: Option<u64>,
    /// Free bytes in the UART's receive FIFO.
    pub serial_room: usize,
    /// A filtered MSR read that needs its value.
    pub msr_read: Option<u32>,
}

/// Why a source asked the VM to stop before the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT.
    Interrupted,
    /// SIGTERM.
    Terminated,
    /// The user typed the console's quit sequence.
    UserQuit,
}

impl StopReason {
    /// The conventional shell status of a process ended this way.
    pub fn exit_status(self) -> i32 {
        match self {
            StopReason::Interrupted => 128 + 2,
            StopReason::Terminated => 128 + 15,
            StopReason::UserQuit => 0,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Interrupted => "interrupted (SIGINT)",
            StopReason::Terminated => "terminated (SIGTERM)",
            StopReason::UserQuit => "quit from the console",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("stopped: {0}")]
    Stopped(StopReason),
    #[error("the guest is halted and no event can ever wake it")]
    Deadlock,
}

/// Where every nondeterministic input comes from: the host (run, record,
/// primary) or a log (replay, backup).
pub trait EventSource {
    /// Appends the events to apply at `query.exit`, in order. When
    /// `query.halted`, blocks until at least one event is due.
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError>;

    /// Called once the core has applied `events` at `exit` and folded the
    /// exit into `signature`: a recorder writes them, a replayer checks them.
    fn applied(
        &mut self,
        exit: u64,
        events: &[Event],
        signature: ExitSignature,
    ) -> Result<(), SourceError>;
}
