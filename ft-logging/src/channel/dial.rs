//! A primary reaching its backup. A connection that is refused, closed or
//! times out means the backup is not there yet, or that strangers on its
//! port took the handshake's slot: the primary tries again, with backoff,
//! until its wait runs out. A real answer from a backup (a wrong key,
//! another protocol, a refused header) ends the wait at once.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::handshake::{POLL, Patience};
use super::primary::connect_within;
use super::{ChannelConfig, ChannelError, PrimaryHello, PrimaryLink};

/// The pause after the first unanswered attempt; it doubles from there.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between attempts.
const MAX_RETRY: Duration = Duration::from_millis(800);

/// Pairs with the backup at `addr`, trying for up to `wait`. `Ok(None)`
/// when no backup answered in that time; [`ChannelError::GaveUp`] as soon
/// as `give_up` (asked every 100 ms) says so. An attempt under way when the
/// wait runs out ends with it, unless the backup already has the header.
pub fn dial(
    addr: SocketAddr,
    config: &ChannelConfig,
    hello: &PrimaryHello,
    wait: Duration,
    give_up: &dyn Fn() -> bool,
) -> Result<Option<PrimaryLink>, ChannelError> {
    let started = Instant::now();
    let patience = Patience {
        deadline: started + wait,
        give_up,
    };
    let mut pause = FIRST_RETRY;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let unanswered = match connect_within(addr, config, hello, patience) {
            Ok(link) => {
                tracing::debug!(
                    attempts,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "reached the backup"
                );
                return Ok(Some(link));
            }
            Err(error) if error.no_answer() => error,
            Err(error) => return Err(error),
        };
        if attempts == 1 {
            tracing::info!(backup = %addr, error = %unanswered, "no answer from the backup yet; trying again");
        } else {
            tracing::debug!(backup = %addr, error = %unanswered, attempts, "no answer from the backup");
        }
        let Some(left) = patience.remaining() else {
            return Ok(None);
        };
        sleep(pause.min(left), give_up)?;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// Sleeps for `span`, asking `give_up` every 100 ms.
fn sleep(span: Duration, give_up: &dyn Fn() -> bool) -> Result<(), ChannelError> {
    let until = Instant::now() + span;
    loop {
        if give_up() {
            return Err(ChannelError::GaveUp);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(POLL));
    }
}
