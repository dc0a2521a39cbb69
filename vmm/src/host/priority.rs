//! CPU priority of the calling thread. A backup replays at a lower
//! priority than everything else on its host: its channel threads (whose
//! acknowledgements gate the primary's output) and, on a shared machine,
//! the primary itself come first; flow control keeps the replay close.
//! Once the primary is lost, the rest of the replay and the takeover run
//! at normal priority.

use std::io;

/// The replaying backup's nice value: the lowest, so that the replay only
/// fills time nothing else wants (measured in docs/BENCHMARKS.md).
pub const REPLAY_NICE: i32 = 19;

/// Sets the calling thread's nice value (Linux schedules threads one by
/// one, so the process's other threads keep theirs).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority reads its integer arguments only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
