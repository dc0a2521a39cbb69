//! Time: PIT ticks for smoltcp's timers, and the store's wall clock.

use rt::{cmos, cpu, pit};
use smoltcp::time::{Duration, Instant};

/// Timer rate. Every tick is a VM exit, a handler run and a logged time
/// sample (a fifth of an idle pair's log at 100 Hz), so it is slow: frames
/// wake the guest by their own interrupt, and only smoltcp's timers
/// (delayed ACK, retransmission) wait for ticks, 50 ms at the most late.
const TICK_HZ: u32 = 20;
const MS_PER_TICK: u64 = 1000 / TICK_HZ as u64;

/// The store's clock: Unix milliseconds as the CMOS clock read at boot
/// plus virtual time since (the TSC MSR, virtual nanoseconds). Both are
/// logged inputs, so a replay or a backup reads the same times. Reading
/// the TSC is a VM exit, so the time is read once per round of requests,
/// and only by a command that needs it.
pub struct Clock {
    boot_unix_ms: u64,
    boot_ns: u64,
    /// This round's time, once read.
    now: Option<u64>,
}

impl Clock {
    /// Starts the timer and reads the wall clock.
    pub fn start() -> Self {
        pit::start_ticks(TICK_HZ);
        let boot_unix_ms = cmos::read_unix_seconds() * 1000;
        Self {
            boot_unix_ms,
            boot_ns: cpu::virtual_ns(),
            now: None,
        }
    }

    /// The time in Unix milliseconds, read at most once per round.
    pub fn now_ms(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| {
            let elapsed = cpu::virtual_ns().saturating_sub(self.boot_ns);
            self.boot_unix_ms + elapsed / 1_000_000
        })
    }

    /// A new round of requests: the next [`Clock::now_ms`] reads again.
    pub fn new_round(&mut self) {
        self.now = None;
    }

    /// A guess of the time without a VM exit, from the timer ticks (which
    /// run late after long computations, never early).
    pub fn estimate_ms(&self) -> u64 {
        self.boot_unix_ms + pit::ticks() * MS_PER_TICK
    }

    /// The time at boot, in Unix milliseconds.
    pub fn boot_ms(&self) -> u64 {
        self.boot_unix_ms
    }
}

/// smoltcp's time, in ticks.
pub fn instant() -> Instant {
    Instant::from_millis((pit::ticks() * MS_PER_TICK) as i64)
}

/// The tick count at which `delay` from now has passed (rounded up); `None`
/// for no deadline.
pub fn deadline(delay: Option<Duration>) -> Option<u64> {
    delay.map(|delay| pit::ticks() + delay.total_millis().div_ceil(MS_PER_TICK))
}

/// Whether the tick count has reached `deadline`.
pub fn reached(deadline: Option<u64>) -> bool {
    deadline.is_some_and(|tick| pit::ticks() >= tick)
}

/// The current tick.
pub fn ticks() -> u64 {
    pit::ticks()
}
