//! Time-travel debugging of traces: a replay that can be positioned at
//! any exit and instruction, moved forwards and backwards, and debugged
//! with gdb.

mod checkpoints;
mod console_window;
pub mod gdb;
mod guest_view;
mod page_walk;
mod progress;
mod replayer;
pub mod session;
mod watch;

pub use crate::replaying::ReplayEnd;
pub use checkpoints::run_with_checkpoints;
pub use console_window::ConsoleWindow;
pub use guest_view::{GuestView, ReadError};
pub use progress::Progress;
pub use replayer::{
    MEMORY_CHECKPOINT_NS, Position, ReplayError, ReplayOptions, Replayer, Stop, ending_status,
};
