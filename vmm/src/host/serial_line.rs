//! COM1's line from this host: how fast its bytes may reach the guest, and
//! how many may be on their way.
//!
//! A real 16550A receives at the line's pace, so a guest that drains its
//! FIFO in a loop finds it empty soon enough to get on with its work. Bytes
//! from stdin enter the FIFO at exits; without a pace, a guest reading in a
//! loop would find a new byte at every exit of the loop and never leave it.
//! So the line carries at most one byte per 10 bit times at 115200 baud
//! (8N1) of virtual time, in bursts of at most a FIFO's worth after a pause.
//! The pace is the live source's choice; the log records the bytes and the
//! exits they arrived at, so a replay needs no clock.
//!
//! Stdin is read only as fast as the guest takes bytes: the reading thread
//! may have at most [`SerialWindow::BYTES`] read but not yet in the FIFO,
//! so a pipe pushes back on its writer and memory stays bounded.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// The line's rate, as a serial console's classic 9600 baud.
pub const BAUD: u64 = 9600;
/// Virtual time a byte takes on the line: 10 bits (8N1).
pub const BYTE_NS: u64 = 1_000_000_000 * 10 / BAUD;
/// The most bytes the line delivers at once after a pause: a FIFO's worth.
const BURST: u64 = 16;

/// When the line can deliver its next byte.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinePace {
    next_ns: u64,
}

impl LinePace {
    /// How many of `waiting` bytes arrive by virtual time `now`, given
    /// `room` in the FIFO; they are counted as delivered.
    pub fn take(&mut self, now: u64, room: usize, waiting: usize) -> usize {
        // A line idle for long delivers a burst, not all it could have.
        self.next_ns = self.next_ns.max(now.saturating_sub((BURST - 1) * BYTE_NS));
        if now < self.next_ns {
            return 0;
        }
        let due = (now - self.next_ns) / BYTE_NS + 1;
        let n = usize::try_from(due)
            .unwrap_or(usize::MAX)
            .min(room)
            .min(waiting);
        self.next_ns += n as u64 * BYTE_NS;
        n
    }

    /// The virtual time of the next byte the line can deliver.
    pub fn next_ns(&self) -> u64 {
        self.next_ns
    }
}

/// Bytes read from stdin and not yet in the guest's FIFO, shared by the
/// reading thread (which waits while the window is full) and the live
/// source (which empties it as bytes reach the FIFO).
#[derive(Debug, Clone, Default)]
pub struct SerialWindow {
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl SerialWindow {
    /// The most bytes on their way to the guest.
    pub const BYTES: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.in_flight
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the window has room; returns how much.
    pub fn wait_room(&self) -> usize {
        let mut in_flight = self.lock();
        while *in_flight >= Self::BYTES {
            in_flight = self
                .in_flight
                .1
                .wait(in_flight)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Self::BYTES - *in_flight
    }

    /// `n` bytes were read.
    pub fn opened(&self, n: usize) {
        *self.lock() += n;
    }

    /// `n` bytes left the window: into the FIFO, or dropped (an escape
    /// sequence the guest never sees).
    pub fn closed(&self, n: usize) {
        let mut in_flight = self.lock();
        *in_flight = in_flight.saturating_sub(n);
        self.in_flight.1.notify_all();
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_line_paces_bytes_and_bursts_a_fifo_after_a_pause() {
        let mut line = LinePace::default();
        // Long idle: a FIFO's worth at most, however much waits.
        assert_eq!(line.take(1_000_000_000, 64, 1000), 16);
        assert_eq!(line.take(1_000_000_000, 64, 1000), 0, "the burst is spent");
        assert_eq!(line.next_ns(), 1_000_000_000 + BYTE_NS);
        // Then a byte per byte time.
        assert_eq!(line.take(1_000_000_000 + BYTE_NS, 64, 1000), 1);
        assert_eq!(line.take(1_000_000_000 + 4 * BYTE_NS, 64, 1000), 3);
        // Never more than the FIFO's room or what waits.
        assert_eq!(line.take(2_000_000_000, 2, 1000), 2);
        assert_eq!(line.take(3_000_000_000, 64, 5), 5);
        assert_eq!(line.take(4_000_000_000, 0, 5), 0);
    }

    #[test]
    fn the_window_holds_the_reader_until_the_guest_takes_bytes() {
        let window = SerialWindow::default();
        assert_eq!(window.wait_room(), SerialWindow::BYTES);
        window.opened(SerialWindow::BYTES);
        let reader = thread::spawn({
            let window = window.clone();
            move || window.wait_room()
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            !reader.is_finished(),
            "the reader waits while the window is full"
        );
        window.closed(16);
        assert_eq!(reader.join().unwrap(), 16);
        window.closed(SerialWindow::BYTES);
        assert_eq!(window.in_flight(), 0);
    }
}
