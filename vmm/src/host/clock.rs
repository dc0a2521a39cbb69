//! Virtual time from the host's monotonic clock, and the wall clock at
//! boot: the live source's samples.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The host's monotonic clock, as nanoseconds since the VM booted.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    boot: Instant,
}

impl VirtualClock {
    /// Virtual time zero is now.
    pub fn start() -> Self {
        Self {
            boot: Instant::now(),
        }
    }

    /// A clock that reads `ns` now: a backup going live resumes the
    /// virtual time its replay reached.
    pub fn resume(ns: u64) -> Self {
        let now = Instant::now();
        Self {
            boot: now.checked_sub(Duration::from_nanos(ns)).unwrap_or(now),
        }
    }

    /// Virtual nanoseconds now.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.boot.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Host time until virtual time `ns`, zero if it has passed.
    pub fn until(&self, ns: u64) -> Duration {
        Duration::from_nanos(ns.saturating_sub(self.now_ns()))
    }

    /// Wall-clock time at virtual time zero, in ns since the Unix epoch.
    pub fn wall_clock_at_boot(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(wall.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_sub(self.now_ns())
    }
}
