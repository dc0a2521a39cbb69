//! Primary/backup fault tolerance (docs/DESIGN.md §4): the primary streams its
//! log to the backup and holds outputs until acknowledged; the backup
//! replays the log and takes over when the primary is lost, after winning
//! the go-live flag on the shared disk.

mod backup;
mod output_gate;
pub mod pairing;
mod primary;

pub use backup::{Backlog, BackupSink, BackupSource, LogStatus, Takeover};
pub use output_gate::{GatedSink, OutputGate};
pub use primary::{FlagClaim, Limits, PairStatus, PrimarySource, watch_backup};
