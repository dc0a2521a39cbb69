//! The lease a paired primary lets outputs out under (docs/DESIGN.md, "The
//! lease"): its output gate and its disk's I/O thread share one.

use std::sync::{Arc, Mutex, PoisonError};

/// Whether the primary holds its lease now.
pub type Leased = Arc<dyn Fn() -> bool + Send + Sync>;

/// The lease outputs go out under while this side is paired; none while it
/// runs alone. Clones share it: the output gate sets it as the side pairs
/// or goes solo, and the disk's I/O thread, which may be behind the gate's
/// releases, asks again right before each write lands.
#[derive(Clone, Default)]
pub struct OutputLease(Arc<Mutex<Option<Leased>>>);

impl OutputLease {
    /// Paired under `leased` from now on, or alone with none.
    pub fn set(&self, leased: Option<Leased>) {
        *self.slot() = leased;
    }

    /// Whether this side is paired.
    pub fn paired(&self) -> bool {
        self.slot().is_some()
    }

    /// Paired, and the lease holds now.
    pub fn holds(&self) -> bool {
        self.slot().as_ref().is_some_and(|leased| leased())
    }

    /// Alone, or paired with the lease holding now: an output may go out.
    pub fn allows(&self) -> bool {
        self.slot().as_ref().is_none_or(|leased| leased())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Leased>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for OutputLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputLease")
            .field("paired", &self.paired())
            .finish()
    }
}
