//! What a live side says about its protection: a line for people on
//! stderr for each change (a transfer started or failed, protected again,
//! alone, fenced). Every change goes through here, so that programs can be
//! told too.

use std::net::SocketAddr;
use std::time::Duration;

/// A standby holds the whole VM and the new pair has formed.
#[derive(Debug, Clone, Copy)]
pub struct Protected {
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
    pub generation: u64,
}

/// Reports for one side, named by its role ("primary", "backup", "standby").
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub role: &'static str,
}

impl Reporter {
    pub fn transfer_started(&self, peer: SocketAddr) {
        eprintln!(
            "ftvm: {}: a standby answered at {peer}: sending it the running VM",
            self.role
        );
    }

    pub fn transfer_failed(&self, peer: SocketAddr, reason: &str) {
        eprintln!(
            "ftvm: {}: the transfer to {peer} failed ({reason}); going on alone",
            self.role
        );
    }

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

    /// The backup is lost and the flag is someone else's.
    pub fn fenced(&self, reason: &str, flag: &str) {
        eprintln!(
            "ftvm: {}: the backup is lost ({reason}) and the go-live flag {flag}: halting",
            self.role
        );
    }
}
