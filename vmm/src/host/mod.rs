//! Host backends: where a live run's inputs come from and its outputs go.
//! Nothing here is deterministic; it all reaches the guest through the
//! [`LiveSource`] at exits.

mod clock;
mod console;
mod disk_io;
mod host_sink;
mod lease;
mod live_source;
pub mod priority;
mod serial_line;
mod stdout_sink;
mod stop;
mod tap;

pub use clock::VirtualClock;
pub use console::{TerminalGuard, spawn_stdin_reader};
pub use disk_io::{DiskIo, sample_sectors};
pub use host_sink::{HostDevices, HostSink};
pub use lease::{Leased, OutputLease};
pub use live_source::{HostInput, LiveSource};
pub use serial_line::SerialWindow;
pub use stdout_sink::StdoutSink;
pub use stop::{PauseSignal, StopSignal, VcpuKicker, watch_signals};
pub use tap::{Tap, TapError, rarp};
