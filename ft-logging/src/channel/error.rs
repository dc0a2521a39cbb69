//! What can go wrong before a link runs. Once it runs, failures are reported
//! as [`Lost`](super::Lost) instead.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{FrameError, MAX_KEY_FILE, MIN_KEY_LEN};
use crate::CodecError;

/// Why the logging channel could not be set up or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The key file cannot be used.
    #[error("key file {}: {problem}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// The heartbeat must be positive and shorter than the timeout.
    #[error(
        "the heartbeat interval ({heartbeat:?}) must be positive and shorter than the timeout ({timeout:?})"
    )]
    Timing {
        /// The heartbeat interval given.
        heartbeat: Duration,
        /// The timeout given.
        timeout: Duration,
    },
    /// The log's header cannot be encoded.
    #[error("cannot send the log header: {0}")]
    Header(#[source] CodecError),
    /// The primary cannot connect to the backup.
    #[error("cannot connect to the backup at {addr}: {source}")]
    Connect {
        /// The backup's address.
        addr: SocketAddr,
        /// The error underneath.
        source: io::Error,
    },
    /// The backup cannot listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address to listen on.
        addr: SocketAddr,
        /// The error underneath.
        source: io::Error,
    },
    /// The handshake with a peer failed.
    #[error("handshake with {peer} failed: {problem}")]
    Handshake {
        /// The peer's address.
        peer: SocketAddr,
        /// What is wrong.
        #[source]
        problem: HandshakeError,
    },
    /// The backup refused the primary's header; the reason is the backup's.
    #[error("the backup refused this primary: {0}")]
    Refused(String),
    /// This backup refused the primary's header; the reason is ours.
    #[error("refused the primary: {0}")]
    Mismatch(String),
    /// This side gave up waiting for its peer (it was asked to stop).
    #[error("gave up waiting for the peer")]
    GaveUp,
    /// An I/O failure of the channel.
    #[error("logging channel I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// The key file cannot be read.
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
    /// The key file is empty.
    #[error("it is empty")]
    Empty,
    /// The key file is too large to be a key.
    #[error("it holds more than {MAX_KEY_FILE} bytes, so it is not a key")]
    TooLarge,
    /// The key has this many bytes, fewer than the minimum.
    #[error("a key of {0} bytes is too short; use at least {MIN_KEY_LEN} random bytes")]
    TooShort(usize),
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer does not speak ftvm's logging protocol.
    #[error("the peer does not speak ftvm's logging protocol (bad magic)")]
    BadMagic,
    /// The peer speaks another version of the protocol.
    #[error("the peer speaks protocol version {theirs}, this ftvm speaks {ours}")]
    Version {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The peer claims the wrong role (two primaries, two backups).
    #[error("the peer's role is {found}, expected {expected}")]
    Role {
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// The peer's proof does not hold: it does not know the key.
    #[error("authentication failed: the peer does not know the key")]
    Authentication,
    /// The peer rejected our proof: its key differs from ours.
    #[error("authentication failed: the peer rejected our proof, so its key differs from ours")]
    Rejected,
    /// The peer sent this byte where a proof was due.
    #[error("the peer sent 0x{0:02x} where a proof was due")]
    UnexpectedReply(u8),
    /// The handshake did not end within this time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// This side gave up waiting (it was asked to stop).
    #[error("gave up waiting")]
    GaveUp,
    /// The peer closed the connection during the handshake.
    #[error("the peer closed the connection")]
    Closed,
    /// No random nonce could be drawn.
    #[error("cannot draw a random nonce: {0}")]
    Random(String),
    /// While the header and the answer to it travel.
    #[error("{0}")]
    Frame(#[source] FrameError),
    /// An I/O failure during the handshake.
    #[error("{0}")]
    Io(#[source] io::Error),
}

impl ChannelError {
    /// Whether the backup did not answer at all: the connection was refused,
    /// closed, reset or timed out, as when it is not there yet or a stranger
    /// on its port took the handshake's slot. A primary tries again after
    /// these; a real answer (a wrong key, another protocol, a refused
    /// header) it takes at once.
    pub fn no_answer(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Io(_) => true,
            Self::Handshake { problem, .. } => match problem {
                HandshakeError::Timeout(_) | HandshakeError::Closed | HandshakeError::Io(_) => true,
                HandshakeError::Frame(frame) => matches!(
                    frame,
                    FrameError::Closed
                        | FrameError::Truncated
                        | FrameError::Silent(_)
                        | FrameError::Stalled(_)
                        | FrameError::Io(_)
                ),
                _ => false,
            },
            _ => false,
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}
