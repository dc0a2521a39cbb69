//! Which connections a listener lets into a handshake, and how it says so.
//!
//! A peer that has not yet proved that it knows the key holds one of a few
//! handshake slots. When every slot is taken, a new connection displaces the
//! oldest unauthenticated one, preferring one that has not even sent a
//! valid hello: connections that stay idle, send garbage or stall can hold
//! no slot against newer arrivals, so however many of them reach the port,
//! a real peer's handshake runs as soon as it connects, and once its hello
//! is in, only strangers that send valid hellos too can displace it. A
//! displaced peer tries again. Each unauthenticated connection costs a
//! socket and a thread only while it holds its slot.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Unauthenticated handshakes that may run at once.
pub(super) const HANDSHAKE_SLOTS: usize = 16;
/// Refusals warned about in a burst, and how fast that allowance comes
/// back; the refusals beyond it are counted into the next warning.
const WARN_BURST: u32 = 5;
const WARN_REFILL: Duration = Duration::from_secs(1);

/// The handshake slots of one listener.
#[derive(Debug)]
pub(super) struct Admission {
    held: Mutex<Held>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Held {
    next_id: u64,
    /// Oldest first.
    slots: VecDeque<Holder>,
}

#[derive(Debug)]
struct Holder {
    id: u64,
    peer: SocketAddr,
    /// The connection, to close it when it is displaced.
    stream: TcpStream,
    /// It sent a valid hello, as a real peer does at once.
    greeted: bool,
    displaced: Arc<AtomicBool>,
}

impl Admission {
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::default(),
            capacity,
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the connection from `peer` a slot. When all are taken, the
    /// oldest holder without a valid hello (else the oldest) is closed and
    /// returned: it was displaced.
    pub(super) fn admit(
        self: &Arc<Self>,
        stream: &TcpStream,
        peer: SocketAddr,
    ) -> io::Result<(Slot, Option<SocketAddr>)> {
        let stream = stream.try_clone()?;
        let displaced = Arc::new(AtomicBool::new(false));
        let mut held = self.held();
        let victim = held
            .slots
            .iter()
            .position(|holder| !holder.greeted)
            .unwrap_or(0);
        let oldest = (held.slots.len() >= self.capacity)
            .then(|| held.slots.remove(victim))
            .flatten()
            .map(|oldest| {
                oldest.displaced.store(true, Ordering::SeqCst);
                // Its handshake thread wakes to a closed connection and ends.
                let _ = oldest.stream.shutdown(Shutdown::Both);
                oldest.peer
            });
        let id = held.next_id;
        held.next_id += 1;
        held.slots.push_back(Holder {
            id,
            peer,
            stream,
            greeted: false,
            displaced: displaced.clone(),
        });
        let slot = Slot {
            id,
            admission: self.clone(),
            displaced,
        };
        Ok((slot, oldest))
    }

    fn greeted(&self, id: u64) {
        if let Some(holder) = self.held().slots.iter_mut().find(|h| h.id == id) {
            holder.greeted = true;
        }
    }

    fn release(&self, id: u64) {
        self.held().slots.retain(|holder| holder.id != id);
    }

    #[cfg(test)]
    pub(super) fn holders(&self) -> usize {
        self.held().slots.len()
    }
}

/// A connection's handshake slot, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    admission: Arc<Admission>,
    displaced: Arc<AtomicBool>,
}

impl Slot {
    /// The peer sent a valid hello.
    pub(super) fn greeted(&self) {
        self.admission.greeted(self.id);
    }

    /// The peer proved that it knows the key: it leaves the slots and can
    /// no longer be displaced.
    pub(super) fn authenticated(&self) {
        self.admission.release(self.id);
    }

    /// Whether a newer connection took this one's slot (and closed it).
    pub(super) fn displaced(&self) -> bool {
        self.displaced.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

/// Warnings about refused connections, each naming the peer and why: a
/// few in a burst, then one a second, with a count of those not warned
/// about; so a flood of connections cannot flood the log.
#[derive(Debug)]
pub(super) struct Refusals {
    state: Mutex<RefusalState>,
}

#[derive(Debug)]
struct RefusalState {
    /// Warnings allowed now (a token bucket).
    allowance: u32,
    refilled: Instant,
    unreported: u64,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            state: Mutex::new(RefusalState {
                allowance: WARN_BURST,
                refilled: Instant::now(),
                unreported: 0,
            }),
        }
    }
}

impl Refusals {
    pub(super) fn refused(&self, peer: SocketAddr, reason: &dyn Display) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let earned = state.refilled.elapsed().as_nanos() / WARN_REFILL.as_nanos();
        if earned > 0 {
            state.allowance = (state.allowance as u128 + earned).min(WARN_BURST.into()) as u32;
            state.refilled += WARN_REFILL * earned as u32;
        }
        if state.allowance == 0 {
            state.unreported += 1;
            tracing::debug!(%peer, %reason, "refused a connection");
            return;
        }
        state.allowance -= 1;
        match std::mem::take(&mut state.unreported) {
            0 => tracing::warn!(%peer, %reason, "refused a connection"),
            more => tracing::warn!(
                %peer,
                %reason,
                "refused a connection, and {more} more not warned about"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;

    fn connection(listener: &TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, peer) = listener.accept().unwrap();
        (near, far, peer)
    }

    #[test]
    fn a_new_connection_displaces_the_oldest_unauthenticated_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admission = Admission::new(2);
        let (mut first, first_far, first_peer) = connection(&listener);
        let (first_slot, none) = admission.admit(&first_far, first_peer).unwrap();
        assert_eq!(none, None);
        let (_second, second_far, second_peer) = connection(&listener);
        let (second_slot, none) = admission.admit(&second_far, second_peer).unwrap();
        assert_eq!(none, None);
        // The second authenticates: it no longer counts.
        second_slot.authenticated();
        let (_third, third_far, third_peer) = connection(&listener);
        let (third_slot, none) = admission.admit(&third_far, third_peer).unwrap();
        assert_eq!(none, None, "an authenticated peer frees its slot");
        let (_fourth, fourth_far, fourth_peer) = connection(&listener);
        let (_fourth_slot, displaced) = admission.admit(&fourth_far, fourth_peer).unwrap();
        assert_eq!(displaced, Some(first_peer));
        assert!(first_slot.displaced());
        assert!(!second_slot.displaced() && !third_slot.displaced());
        // The displaced connection is closed under its peer.
        first
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(first.read(&mut [0; 8]).unwrap(), 0);
        assert_eq!(admission.holders(), 2);
        drop(third_slot);
        assert_eq!(admission.holders(), 1, "a dropped slot is free again");
    }

    #[test]
    fn a_peer_that_sent_its_hello_is_displaced_last() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admission = Admission::new(2);
        let admit = || {
            let (near, far, peer) = connection(&listener);
            let (slot, displaced) = admission.admit(&far, peer).unwrap();
            (near, slot, peer, displaced)
        };
        let (_a, greeted, greeted_peer, _) = admit();
        greeted.greeted();
        // A slot bound to `_` would be given back at once.
        let (_b, _silent, silent_peer, _) = admit();
        // Strangers that never say hello displace each other, not it.
        let (_c, third, third_peer, displaced) = admit();
        assert_eq!(displaced, Some(silent_peer));
        let (_d, _fourth, _, displaced) = admit();
        assert_eq!(displaced, Some(third_peer));
        assert!(third.displaced() && !greeted.displaced());
        // Once every holder has said hello, the oldest goes.
        let (_e, last, _, _) = admit();
        last.greeted();
        let (_f, _sixth, _, displaced) = admit();
        assert_eq!(displaced, Some(greeted_peer));
    }
}
