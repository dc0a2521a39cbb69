//! Primary/backup fault tolerance (docs/DESIGN.md §4): the primary streams its
//! log to the backup and holds outputs until acknowledged; the backup
//! replays the log and takes over when the primary is lost, after winning
//! the go-live flag on the shared disk. A side running alone brings a
//! standby into sync with a live transfer (re-protection).

mod backup;
mod output_gate;
pub mod pairing;
mod primary;
mod protector;
mod report;
mod run;
mod transfer;

pub use backup::{Backlog, BackupSink, BackupSource, LogStatus, Start, Takeover};
pub use output_gate::{GatedSink, OutputGate};
pub use primary::{Limits, PairMode, PairStatus, PrimarySource};
pub use protector::{Protection, ProtectorConfig, Watched};
pub use report::{Protected, Reporter};
pub use run::{Protectable, run};
pub use transfer::{Cutovers, MAX_ROUNDS};
