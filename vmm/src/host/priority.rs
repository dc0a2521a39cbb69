//! CPU priority of a backup's replay thread. A backup replays at a lower
//! priority than everything else on its host: its channel threads (whose
//! acknowledgements gate the primary's output) and, on a shared machine,
//! the primary itself come first. It runs at normal priority while it
//! trails (messages pile up), while the primary says flow control holds
//! its guest, and for good once the primary is lost: low priority must
//! never let other work on the backup's host hold the guest back.

use std::io;
use std::sync::{Mutex, PoisonError};

/// The replaying backup's nice value: the lowest, so that the replay only
/// fills time nothing else wants (measured in docs/BENCHMARKS.md).
pub const REPLAY_NICE: i32 = 19;

/// The priority of one replay thread. Any thread may change it: the
/// channel's reader, which runs while the replay is starved, tells it of
/// the primary's stalls.
#[derive(Debug)]
pub struct ReplayPriority {
    /// The replay thread; none when there is no thread to manage.
    tid: Option<libc::pid_t>,
    urgency: Mutex<Urgency>,
}

/// Why the replay would run at normal priority, and the nice value set.
#[derive(Debug, Default)]
struct Urgency {
    behind: bool,
    primary_stalled: bool,
    primary_lost: bool,
    nice: Option<i32>,
}

impl ReplayPriority {
    /// The priority of the calling thread, which now replays at low
    /// priority.
    pub fn of_this_thread() -> Self {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let priority = Self {
            tid: Some(tid),
            urgency: Mutex::default(),
        };
        priority.update(|_| {});
        priority
    }

    /// A priority that changes no thread's (a replay under test).
    #[cfg(test)]
    pub fn unmanaged() -> Self {
        Self {
            tid: None,
            urgency: Mutex::default(),
        }
    }

    /// The replay trails the log received, or has caught up.
    pub fn set_behind(&self, behind: bool) {
        self.update(|urgency| urgency.behind = behind);
    }

    /// The primary's flow control holds its guest, waiting for this replay,
    /// or has let go.
    pub fn set_primary_stalled(&self, stalled: bool) {
        self.update(|urgency| urgency.primary_stalled = stalled);
    }

    /// The primary is lost: the rest of the replay and the takeover are
    /// urgent.
    pub fn primary_lost(&self) {
        self.update(|urgency| urgency.primary_lost = true);
    }

    fn update(&self, change: impl FnOnce(&mut Urgency)) {
        let mut urgency = self.urgency.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut urgency);
        let urgent = urgency.behind || urgency.primary_stalled || urgency.primary_lost;
        let nice = if urgent { 0 } else { REPLAY_NICE };
        if urgency.nice == Some(nice) {
            return;
        }
        urgency.nice = Some(nice);
        let Some(tid) = self.tid else { return };
        tracing::debug!(nice, ?urgency, "the replay's CPU priority");
        // SAFETY: setpriority reads its integer arguments only.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
            let error = io::Error::last_os_error();
            tracing::warn!(%error, nice, "cannot change the replay's CPU priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of thread `tid`, as the kernel reports it.
    fn nice_of(tid: libc::pid_t) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the command's closing parenthesis; nice is field 19.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[16].parse().unwrap()
    }

    #[test]
    fn any_reason_to_hurry_gives_normal_priority_until_none_is_left() {
        std::thread::spawn(|| {
            let priority = ReplayPriority::of_this_thread();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            assert_eq!(nice_of(tid), REPLAY_NICE);
            priority.set_primary_stalled(true);
            assert_eq!(nice_of(tid), 0);
            priority.set_behind(true);
            priority.set_primary_stalled(false);
            assert_eq!(nice_of(tid), 0, "still behind");
            priority.set_behind(false);
            assert_eq!(nice_of(tid), REPLAY_NICE);
            priority.primary_lost();
            priority.set_behind(false);
            assert_eq!(nice_of(tid), 0, "lost is for good");
        })
        .join()
        .unwrap();
    }
}
