//! The handshake: each side proves that it knows the key, bound to its role
//! and to both sides' fresh nonces, and both derive the session keys.
//! Messages have fixed sizes and the whole exchange a deadline, so a peer
//! that sends garbage or nothing costs neither memory nor a stuck thread.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::Mac as _;

use super::frame::{MAC_LEN, Mac};
use super::{AuthKey, HANDSHAKE_TIMEOUT, HELLO_TIMEOUT, HandshakeError};

pub(super) const MAGIC: [u8; 8] = *b"FTVMLOG1";
pub(super) const VERSION: u16 = 2;
/// Magic, version, role, nonce.
pub(super) const HELLO_LEN: usize = 8 + 2 + 1 + NONCE_LEN;
/// Where a hello holds the sender's role.
pub(super) const ROLE_AT: usize = 10;
/// A proof's tag byte and MAC.
pub(super) const PROOF_LEN: usize = 1 + MAC_LEN;
const NONCE_LEN: usize = 32;
const PROOF: u8 = 0x50;
/// The backup's answer to a proof that does not hold.
pub(super) const REJECTED: u8 = 0x52;
const AUTH_LABEL: &[u8] = b"ftvm-auth";
const SESSION_LABEL: &[u8] = b"ftvm-session";

type Nonce = [u8; NONCE_LEN];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Primary,
    Backup,
}

impl Role {
    pub(super) fn byte(self) -> u8 {
        match self {
            Self::Primary => 1,
            Self::Backup => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
        }
    }

    fn describe(byte: u8) -> String {
        match byte {
            1 => Self::Primary.name().into(),
            2 => Self::Backup.name().into(),
            _ => format!("unknown (0x{byte:02x})"),
        }
    }
}

/// The keyed MACs of both directions.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) to_backup: Mac,
    pub(super) to_primary: Mac,
}

impl Session {
    fn derive(key: &AuthKey, primary: &Nonce, backup: &Nonce) -> Self {
        let direction = |sender: Role| {
            let mut mac = key.mac();
            mac.update(SESSION_LABEL);
            mac.update(&[sender.byte()]);
            mac.update(primary);
            mac.update(backup);
            let session_key = mac.finalize().into_bytes();
            Mac::new_from_slice(&session_key).expect("HMAC takes keys of any length")
        };
        Self {
            to_backup: direction(Role::Primary),
            to_primary: direction(Role::Backup),
        }
    }
}

/// How often a waiting side asks whether to give up.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// What bounds a wait for the peer: a deadline, and a question asked every
/// [`POLL`] whether to stop sooner (the process is stopping, say).
#[derive(Clone, Copy)]
pub(super) struct Patience<'a> {
    pub(super) deadline: Instant,
    pub(super) give_up: &'a dyn Fn() -> bool,
}

impl Patience<'_> {
    /// What is left before the deadline; none once it has passed.
    pub(super) fn remaining(&self) -> Option<Duration> {
        Some(self.deadline.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
    }
}

/// The primary's half: it proves itself first. It waits for the backup
/// until `patience` runs out.
pub(super) fn as_primary(
    stream: &TcpStream,
    key: &AuthKey,
    patience: Patience<'_>,
) -> Result<Session, HandshakeError> {
    let mut exchange = Exchange::new(stream, patience, HANDSHAKE_TIMEOUT);
    let ours = nonce()?;
    exchange.write(&hello(Role::Primary, &ours))?;
    let theirs = exchange.read_hello(Role::Backup)?;
    exchange.write(&proof_message(key, Role::Primary, &ours, &theirs))?;
    let mut tag = [0];
    exchange.read(&mut tag)?;
    match tag[0] {
        PROOF => {}
        REJECTED => return Err(HandshakeError::Rejected),
        other => return Err(HandshakeError::UnexpectedReply(other)),
    }
    let mut proof = [0; MAC_LEN];
    exchange.read(&mut proof)?;
    if !holds(key, Role::Backup, &theirs, &ours, &proof) {
        return Err(HandshakeError::Authentication);
    }
    Ok(Session::derive(key, &ours, &theirs))
}

/// The backup's half: it proves itself only to a primary that has. The
/// primary's hello must come within [`HELLO_TIMEOUT`], the rest within
/// [`HANDSHAKE_TIMEOUT`] of the start; `greeted` hears of a valid hello.
pub(super) fn as_backup(
    stream: &TcpStream,
    key: &AuthKey,
    greeted: &dyn Fn(),
) -> Result<Session, HandshakeError> {
    let started = Instant::now();
    let hello_by = Patience {
        deadline: started + HELLO_TIMEOUT,
        give_up: &|| false,
    };
    let mut exchange = Exchange::new(stream, hello_by, HELLO_TIMEOUT);
    let ours = nonce()?;
    exchange.write(&hello(Role::Backup, &ours))?;
    let theirs = exchange.read_hello(Role::Primary)?;
    greeted();
    exchange.extend(started + HANDSHAKE_TIMEOUT, HANDSHAKE_TIMEOUT);
    let mut message = [0; PROOF_LEN];
    exchange.read(&mut message)?;
    let [tag, proof @ ..] = message;
    if tag != PROOF {
        return Err(HandshakeError::UnexpectedReply(tag));
    }
    if !holds(key, Role::Primary, &theirs, &ours, &proof) {
        // Tells an honest primary with another key why; nothing more.
        let _ = exchange.write(&[REJECTED]);
        return Err(HandshakeError::Authentication);
    }
    exchange.write(&proof_message(key, Role::Backup, &ours, &theirs))?;
    Ok(Session::derive(key, &theirs, &ours))
}

/// Waits until the peer has sent something, or closed, within `patience`.
pub(super) fn await_answer(
    stream: &TcpStream,
    patience: Patience<'_>,
) -> Result<(), HandshakeError> {
    Exchange::new(stream, patience, HANDSHAKE_TIMEOUT).await_answer()
}

fn nonce() -> Result<Nonce, HandshakeError> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|error| HandshakeError::Random(error.to_string()))?;
    Ok(nonce)
}

fn hello(role: Role, nonce: &Nonce) -> [u8; HELLO_LEN] {
    let mut hello = [0; HELLO_LEN];
    hello[..8].copy_from_slice(&MAGIC);
    hello[8..ROLE_AT].copy_from_slice(&VERSION.to_le_bytes());
    hello[ROLE_AT] = role.byte();
    hello[ROLE_AT + 1..].copy_from_slice(nonce);
    hello
}

/// The MAC by which `role` proves that it knows the key.
fn proof(key: &AuthKey, role: Role, own: &Nonce, peer: &Nonce) -> Mac {
    let mut mac = key.mac();
    mac.update(AUTH_LABEL);
    mac.update(&[role.byte()]);
    mac.update(own);
    mac.update(peer);
    mac
}

fn proof_message(key: &AuthKey, role: Role, own: &Nonce, peer: &Nonce) -> [u8; PROOF_LEN] {
    let mut message = [0; PROOF_LEN];
    message[0] = PROOF;
    message[1..].copy_from_slice(&proof(key, role, own, peer).finalize().into_bytes());
    message
}

/// Whether the peer, in role `role`, proved that it knows the key; in
/// constant time.
fn holds(key: &AuthKey, role: Role, peer: &Nonce, own: &Nonce, received: &[u8]) -> bool {
    proof(key, role, peer, own).verify_slice(received).is_ok()
}

/// The connection during the handshake, which must end by a deadline.
struct Exchange<'a> {
    stream: &'a TcpStream,
    patience: Patience<'a>,
    /// The time allowed so far, for the message of a timeout.
    allowed: Duration,
}

impl<'a> Exchange<'a> {
    fn new(stream: &'a TcpStream, patience: Patience<'a>, allowed: Duration) -> Self {
        Self {
            stream,
            patience,
            allowed,
        }
    }

    /// Moves the deadline, once the peer has shown it is worth waiting for.
    fn extend(&mut self, deadline: Instant, allowed: Duration) {
        self.patience.deadline = deadline;
        self.allowed = allowed;
    }

    fn read_hello(&mut self, expected: Role) -> Result<Nonce, HandshakeError> {
        // The magic alone first, so a stranger is told apart at once.
        let mut magic = [0; MAGIC.len()];
        self.read(&mut magic)?;
        if magic != MAGIC {
            return Err(HandshakeError::BadMagic);
        }
        let mut rest = [0; HELLO_LEN - MAGIC.len()];
        self.read(&mut rest)?;
        let [v0, v1, role, nonce @ ..] = rest;
        let version = u16::from_le_bytes([v0, v1]);
        if version != VERSION {
            return Err(HandshakeError::Version {
                ours: VERSION,
                theirs: version,
            });
        }
        if role != expected.byte() {
            return Err(HandshakeError::Role {
                expected: expected.name(),
                found: Role::describe(role),
            });
        }
        Ok(nonce)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), HandshakeError> {
        let mut filled = 0;
        while filled < buf.len() {
            // Each read waits for what is left of the deadline, in slices
            // short enough to give up in time.
            self.stream
                .set_read_timeout(Some(self.remaining()?.min(POLL)))?;
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(read) => filled += read,
                Err(error) => self.failure(error)?,
            }
        }
        Ok(())
    }

    fn await_answer(&self) -> Result<(), HandshakeError> {
        loop {
            self.stream
                .set_read_timeout(Some(self.remaining()?.min(POLL)))?;
            match self.stream.peek(&mut [0]) {
                // Bytes or the end: the read that follows tells which.
                Ok(_) => return Ok(()),
                Err(error) => self.failure(error)?,
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), HandshakeError> {
        let mut written = 0;
        while written < bytes.len() {
            self.stream
                .set_write_timeout(Some(self.remaining()?.min(POLL)))?;
            match self.stream.write(&bytes[written..]) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(wrote) => written += wrote,
                Err(error) => self.failure(error)?,
            }
        }
        Ok(())
    }

    fn remaining(&self) -> Result<Duration, HandshakeError> {
        self.patience
            .remaining()
            .ok_or(HandshakeError::Timeout(self.allowed))
    }

    /// Ok for a call to try again: interrupted, or a slice of the wait
    /// that passed while the caller still wants to wait.
    fn failure(&self, error: io::Error) -> Result<(), HandshakeError> {
        match error.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                if (self.patience.give_up)() {
                    return Err(HandshakeError::GaveUp);
                }
                self.remaining().map(drop)
            }
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                Err(HandshakeError::Closed)
            }
            _ => Err(HandshakeError::Io(error)),
        }
    }
}
