//! Stopping a run from outside: signals set a [`StopSignal`] and kick the
//! vCPU thread out of KVM_RUN, which then counts nothing and stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use ft_logging::StopReason;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

use super::HostInput;

const KICK_INTERVAL: Duration = Duration::from_millis(20);

/// The first stop request, shared between the threads that see it.
#[derive(Debug, Default)]
pub struct StopSignal(AtomicU8);

impl StopSignal {
    const REASONS: [StopReason; 3] = [
        StopReason::Interrupted,
        StopReason::Terminated,
        StopReason::UserQuit,
    ];

    /// Records `reason` unless a stop was already requested.
    pub fn request(&self, reason: StopReason) {
        let code = Self::REASONS.iter().position(|r| *r == reason).unwrap_or(0) as u8 + 1;
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The stop requested, if any.
    pub fn requested(&self) -> Option<StopReason> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            code => Self::REASONS.get(usize::from(code) - 1).copied(),
        }
    }
}

/// Interrupts KVM_RUN on the vCPU thread with a real-time signal.
#[derive(Debug, Clone)]
pub struct VcpuKicker {
    thread: libc::pthread_t,
    done: Arc<AtomicBool>,
}

extern "C" fn ignore_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

impl VcpuKicker {
    /// A kicker for the calling thread, which must be the one running the vCPU.
    pub fn for_current_thread() -> Result<Self, vmm_sys_util::errno::Error> {
        register_signal_handler(SIGRTMIN(), ignore_kick)?;
        Ok(Self {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            done: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Kicks until the vCPU thread says it stopped: a signal that lands
    /// just before KVM_RUN enters the guest would be missed otherwise.
    pub fn kick_until_done(&self) {
        while !self.done.load(Ordering::SeqCst) {
            // SAFETY: the vCPU thread is the main thread, which outlives
            // every kick (it sets `done` before it returns).
            unsafe { libc::pthread_kill(self.thread, SIGRTMIN()) };
            thread::sleep(KICK_INTERVAL);
        }
    }

    /// Called by the vCPU thread once it no longer runs the guest.
    pub fn done(&self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Turns SIGINT and SIGTERM into stop requests: the live source sees them
/// at the next exit, a halted guest is woken, a running one kicked.
pub fn watch_signals(
    stop: Arc<StopSignal>,
    wake: Sender<HostInput>,
    kicker: VcpuKicker,
) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let reason = if signal == SIGINT {
                    StopReason::Interrupted
                } else {
                    StopReason::Terminated
                };
                stop.request(reason);
                let _ = wake.send(HostInput::Wake);
                kicker.kick_until_done();
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_wins() {
        let stop = StopSignal::default();
        assert_eq!(stop.requested(), None);
        stop.request(StopReason::Terminated);
        stop.request(StopReason::Interrupted);
        assert_eq!(stop.requested(), Some(StopReason::Terminated));
    }
}
