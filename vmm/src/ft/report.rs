//! What a live side says about its protection: an event for programs
//! (`--events`, `--metrics`) and a line for people on stderr for each change:
//! a transfer started or failed, protected again, the backup lost, alone,
//! fenced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::monitor::{Event, Monitor, Role};

/// A standby holds the whole VM and the new pair has formed.
#[derive(Debug, Clone, Copy)]
pub struct Protected {
    /// The standby, now the backup.
    pub peer: SocketAddr,
    /// How long the guest was paused at the cutover.
    pub pause: Duration,
    /// Bytes of the VM sent: every round's pages, the last pages and the
    /// machine's state.
    pub bytes: u64,
    /// Rounds of pages sent while the guest ran.
    pub rounds: u32,
    /// From the standby's answer to the new pair at the next generation.
    pub to_protected: Duration,
    /// The go-live flag's generation the new pair formed at.
    pub generation: u64,
}

/// Reports for one side, named by its role ("primary", "backup", "standby").
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The side's role when it started, for its lines on stderr.
    pub role: &'static str,
    /// Where events and metrics go.
    pub monitor: Arc<Monitor>,
}

impl Reporter {
    /// A standby answered and the running VM goes to it.
    pub fn transfer_started(&self, peer: SocketAddr) {
        eprintln!(
            "ftvm: {}: a standby answered at {peer}: sending it the running VM",
            self.role
        );
        self.monitor.emit(Event::TransferStarted {
            peer: peer.to_string(),
        });
    }

    /// A peer answered but no backup came of it.
    pub fn transfer_failed(&self, peer: SocketAddr, reason: &str) {
        eprintln!(
            "ftvm: {}: the transfer to {peer} failed ({reason}); going on alone",
            self.role
        );
        self.monitor.emit(Event::TransferFailed {
            peer: peer.to_string(),
            reason: reason.into(),
        });
    }

    /// The standby holds the VM and the new pair formed.
    pub fn protected(&self, protected: &Protected) {
        eprintln!(
            "ftvm: {}: protected again by {} at generation {}: pause {} ms, {} bytes in {} rounds, {} ms to protected",
            self.role,
            protected.peer,
            protected.generation,
            protected.pause.as_millis(),
            protected.bytes,
            protected.rounds,
            protected.to_protected.as_millis()
        );
        let stats = self.monitor.stats();
        stats.set_role(Role::Primary);
        stats.set_paired(true);
        self.monitor.emit(Event::Protected {
            peer: protected.peer.to_string(),
            pause_ms: protected.pause.as_millis() as u64,
            pause_us: protected.pause.as_micros() as u64,
            bytes: protected.bytes,
            rounds: u64::from(protected.rounds),
            to_protected_ms: protected.to_protected.as_millis() as u64,
        });
    }

    /// The backup (or the standby being sent the VM) is gone.
    pub fn lost(&self, reason: &str) {
        self.monitor.emit(Event::PeerLost {
            reason: reason.into(),
        });
        self.monitor.stats().set_paired(false);
    }

    /// The backup is lost and this side won the flag.
    pub fn alone(&self, reason: &str, silent: Duration, claim: Duration) {
        eprintln!(
            "ftvm: {}: the backup is lost ({reason}); won the go-live flag, going on alone (silent for {} ms, test-and-set {} ms)",
            self.role,
            silent.as_millis(),
            claim.as_millis()
        );
    }

    /// This side runs alone again (it owns the flag).
    pub fn alone_again(&self) {
        self.monitor.stats().set_role(Role::Alone);
    }

    /// The backup is lost and the flag is someone else's.
    pub fn fenced(&self, reason: &str, flag: &str) {
        eprintln!(
            "ftvm: {}: the backup is lost ({reason}) and the go-live flag {flag}: halting",
            self.role
        );
    }
}
