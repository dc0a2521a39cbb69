//! The logging channel: a primary streams its log to a backup over TCP, and
//! the backup acknowledges what it has received (docs/DESIGN.md §4).
//!
//! The backup listens and the primary connects. First both prove that they
//! know a pre-shared [`AuthKey`], in a handshake of fixed-size messages that
//! must end within [`HANDSHAKE_TIMEOUT`] (and the primary's hello must reach
//! the backup within [`HELLO_TIMEOUT`]):
//!
//! ```text
//! both sides   Hello: "FTVMLOG1", version u16 LE, role u8 (1 primary, 2 backup), nonce [32]
//! primary      0x50, HMAC-SHA256(key, "ftvm-auth" ‖ own role ‖ own nonce ‖ peer nonce)
//! backup       the same for itself once the primary's proof holds, else 0x52 (rejected)
//! ```
//!
//! A proof covers its sender's role, so a proof from one side never passes
//! as the other's (no reflection), and both nonces, so no proof passes twice
//! (no replay). Each direction then has its own session key,
//! HMAC-SHA256(key, "ftvm-session" ‖ sender's role ‖ primary nonce ‖ backup
//! nonce), and every message travels in an authenticated, numbered frame:
//!
//! ```text
//! [u32 length][u8 kind][u64 sequence][payload][HMAC-SHA256(session key, sequence ‖ kind ‖ payload)]
//! ```
//!
//! Integers are little endian; the length counts the bytes after itself;
//! sequences start at 0 in each direction and go up by one. The messages:
//!
//! | kind | direction | payload |
//! | --- | --- | --- |
//! | 0x01 Header | primary → backup, first | generation u64, the header's codec frame |
//! | 0x02 Batch | primary → backup | through_exit u64, released console bytes u64, released frames u64, sent_ns u64, record frames |
//! | 0x03 Heartbeat | primary → backup | through_exit u64, released console bytes u64, released frames u64, sent_ns u64 |
//! | 0x04 Goodbye | primary → backup, last | none |
//! | 0x05 Join | primary → standby, first | as Header: the primary offers its running VM |
//! | 0x06 Pages | primary → standby | a set of memory pages (`vm-state` encoding) |
//! | 0x07 State | primary → standby, once | the machine's state at the cutover (`vm-state` encoding) |
//! | 0x08 Disk check | primary → standby, once | (sector u64, SHA-256 \[32\]) per sampled sector |
//! | 0x09 Stall | primary → backup | stalled u64: 1 when flow control starts holding the guest, 0 when it lets go |
//! | 0x81 Accept | backup → primary, first | none |
//! | 0x82 Refuse | backup → primary, first and last | reason (UTF-8) |
//! | 0x83 Ack | backup → primary | through_exit u64, echo_ns u64 |
//! | 0x84 Progress | backup → primary | exit u64, virtual_ns u64 |
//! | 0x85 Heartbeat | backup → primary | none |
//! | 0x86 Holding | standby → primary, once | exit u64: the standby holds the whole state |
//!
//! `sent_ns` dates a message on the primary's clock; an Ack echoes the
//! latest date received, which renews the primary's [`Lease`].
//!
//! A live transfer (re-protection) is a link that starts with Join instead
//! of Header: pages in rounds while the guest runs, then State, then the log
//! from the exit after the state's, with the disk check among its first
//! messages. The standby acknowledges nothing until it has the state and
//! has checked its disk; then it says Holding, and acknowledges from then on
//! as any backup.
//!
//! Each side's writer sends a heartbeat once it has sent nothing for
//! [`ChannelConfig::heartbeat`]; each side's reader counts any byte as a sign
//! of life and reports the peer [`Lost`] after [`ChannelConfig::timeout`] of
//! silence, at the end of the connection, or on any protocol violation.

mod admission;
mod backup;
mod dial;
mod error;
mod frame;
mod handshake;
mod key;
mod lease;
mod link;
mod listener;
mod message;
mod primary;

use std::time::{Duration, Instant};

use crate::Header;

pub use backup::{BackupLink, FromPrimary};
pub use dial::dial;
pub use error::{ChannelError, HandshakeError, KeyProblem};
pub use frame::FrameError;
pub use key::{AuthKey, MAX_KEY_FILE, MIN_KEY_LEN};
pub use lease::Lease;
pub use listener::BackupListener;
pub use message::{MAX_BATCH, MAX_DISK_SAMPLES, MAX_TRANSFER_PART};
pub use primary::{FromBackup, LogSender, PrimaryLink, connect};

/// How often a writer that has nothing to send sends a heartbeat.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(50);
/// How long a reader waits in silence before it declares the peer lost.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest the handshake may take, and the longest either side may wait
/// for a byte while the header and the backup's answer to it travel.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a listener waits for a new connection's first handshake message
/// (the peer's hello, which an honest primary sends as soon as it connects).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// How a pair talks: the key both sides know, and the pace of heartbeats.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The key both sides must know.
    pub key: AuthKey,
    /// A writer that has sent nothing for this long sends a heartbeat.
    pub heartbeat: Duration,
    /// A reader that has received nothing for this long declares the peer
    /// lost; it must be longer than `heartbeat`.
    pub timeout: Duration,
}

impl ChannelConfig {
    /// The key with the default heartbeat and timeout.
    pub fn new(key: AuthKey) -> Self {
        Self {
            key,
            heartbeat: DEFAULT_HEARTBEAT,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn validate(&self) -> Result<(), ChannelError> {
        if self.heartbeat.is_zero() || self.timeout <= self.heartbeat {
            return Err(ChannelError::Timing {
                heartbeat: self.heartbeat,
                timeout: self.timeout,
            });
        }
        Ok(())
    }
}

/// What a primary tells its backup before the log: the run's header, and
/// the go-live generation the pair forms at; or, with `join`, what a live
/// side tells a standby before it sends its running VM: the VM's header
/// and the generation the live side owns (the new pair forms at the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryHello {
    /// The header of the run the primary's log is of.
    pub header: Header,
    /// The go-live generation the pair forms at, or (a join) the one the
    /// live side owns.
    pub generation: u64,
    /// A live side offering its running VM to a standby.
    pub join: bool,
}

/// One sector of the shared disk as the primary read it at the cutover: a
/// standby whose image differs there is not on the same disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSample {
    /// The sector's number.
    pub sector: u64,
    /// The SHA-256 of its 512 bytes.
    pub sha256: [u8; 32],
}

/// How much of its output the primary has released: console bytes and
/// network frames. A backup that takes over emits again only what comes
/// after these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Console bytes released.
    pub console: u64,
    /// Frames released.
    pub frames: u64,
}

impl Released {
    /// The later of two reports, stream by stream.
    pub fn max(self, other: Self) -> Self {
        Self {
            console: self.console.max(other.console),
            frames: self.frames.max(other.frames),
        }
    }
}

/// The peer is gone: reported once per link, and nothing follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Why the peer is considered gone.
    pub reason: String,
    /// When the last byte from the peer arrived; the detection time is the
    /// time from this to the report.
    pub last_heard: Instant,
}

#[cfg(test)]
mod tests;
