//! Time for smoltcp, counted in PIT ticks (the guest never reads the TSC).

use rt::pit;
use smoltcp::time::{Duration, Instant};

/// Timer rate. Every tick is a VM exit, a handler run and a logged time
/// sample (a fifth of an idle pair's log at 100 Hz), so it is slow: frames
/// wake the guest by their own interrupt, and only smoltcp's timers
/// (delayed ACK, retransmission) wait for ticks, 50 ms at the most late.
const TICK_HZ: u32 = 20;
const MS_PER_TICK: u64 = 1000 / TICK_HZ as u64;

pub fn start() {
    pit::start_ticks(TICK_HZ);
}

pub fn now() -> Instant {
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
