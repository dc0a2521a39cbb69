//! The `EventSource` interface: where every nondeterministic input enters
//! the deterministic core, and where the record of each exit goes back.

use std::fmt;

use crate::{End, Event, ExitSignature, SinkError, StateDigest, StreamDigest};

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
    /// Disk requests are in flight: their completions will come.
    pub io_pending: bool,
    /// Receive buffers the network card has, each for one frame.
    pub net_rx_room: usize,
}

/// The end of one exit (or of one batch of events at a halted exit).
#[derive(Debug, Clone, Copy)]
pub struct ExitDone<'a> {
    /// The exit's number; exit 0 is boot, before the first instruction.
    pub exit: u64,
    /// The events applied in this call, in order (often none).
    pub events: &'a [Event],
    /// The exit signature after this exit.
    pub signature: ExitSignature,
    /// The console's digest including this exit's output.
    pub console: StreamDigest,
    /// This exit produced output (console bytes, a disk request, a frame),
    /// which the sink gets right after; such an exit (an I/O access, never
    /// a halt) takes no more events.
    pub output: bool,
    /// No more events come at this exit: the guest does not wait here in
    /// HLT for an interrupt. A halted exit takes events again until one is
    /// pending, and is complete at its last call.
    pub complete: bool,
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
    pub fn exit_status(self) -> u8 {
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

/// Why a source gives no events: the run ends here (a stop, the end of the log, an idle guest), or it failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The host asked the run to stop.
    #[error("stopped: {0}")]
    Stopped(StopReason),
    /// The guest is halted and no event can ever wake it.
    #[error("the guest is halted and no event can ever wake it")]
    Deadlock,
    /// The log ends at an exit the run has passed: the recorded run was
    /// stopped, or failed, there.
    #[error("the log ends here")]
    LogEnded,
    /// The log's source went away (the primary was lost); the log holds
    /// every input through exit `through_exit` (none at all when `None`)
    /// and nothing after it.
    #[error("the log's source is gone; it holds {}", through(.through_exit))]
    LogExhausted {
        /// Every input through this exit is in the log; none at all when `None`.
        through_exit: Option<u64>,
    },
    /// The log, still arriving, holds every input through exit
    /// `through_exit`, and nothing after it yet: the replay may finish its
    /// exits up to there without waiting for more.
    #[error("the log holds every input through exit {through_exit} so far")]
    CaughtUp {
        /// Every input through this exit is in the log.
        through_exit: u64,
    },
    /// The guest took another path than the log's.
    #[error("divergence at exit {exit}: {detail}")]
    Divergence {
        /// The exit where it was found.
        exit: u64,
        /// What differs.
        detail: String,
    },
    /// This side lost the go-live flag (or never held it) and must stop.
    #[error("{0}")]
    Fenced(String),
    /// A standby's live side was lost before it moved the go-live flag to
    /// the new pair's generation: the pair never formed, and this side
    /// must not go live.
    #[error("{0}")]
    Unpaired(String),
    /// The log cannot be read, or is not a valid log.
    #[error("{0}")]
    Log(String),
    /// The log cannot be written (a trace on a full disk, say).
    #[error("{0}")]
    LogWrite(String),
    /// An output of the guest could not be emitted.
    #[error(transparent)]
    Output(#[from] SinkError),
}

fn through(exit: &Option<u64>) -> String {
    match exit {
        Some(exit) => format!("every input through exit {exit}"),
        None => "no input at all".into(),
    }
}

/// Where every nondeterministic input comes from, and where the record of
/// what the guest did goes back to: the host (run), the host and a trace
/// (record) or the backup (primary); a trace (replay) or the primary
/// (backup), which check it.
pub trait EventSource {
    /// Appends the events to apply at `query.exit`, in order. When
    /// `query.halted`, blocks until at least one event is due.
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError>;

    /// Called at the end of every exit, and after each batch of events at a
    /// halted exit, once the events are applied, the exit folded into the
    /// signature and its output into the digests, before the output leaves.
    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError>;

    /// The guest's state after `exit`, every `digest_interval` exits.
    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError>;

    /// The run ended; a recorder writes its end record, a replayer checks it.
    fn end(&mut self, end: &End) -> Result<(), SourceError>;
}
