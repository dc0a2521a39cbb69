//! What can go wrong before a link runs. Once it runs, failures are reported
//! as [`Lost`](super::Lost) instead.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{FrameError, MAX_KEY_FILE, MIN_KEY_LEN};
use crate::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("key file {}: {problem}", path.display())]
    Key { path: PathBuf, problem: KeyProblem },
    #[error(
        "the heartbeat interval ({heartbeat:?}) must be positive and shorter than the timeout ({timeout:?})"
    )]
    Timing {
        heartbeat: Duration,
        timeout: Duration,
    },
    #[error("cannot send the log header: {0}")]
    Header(#[source] CodecError),
    #[error("cannot connect to the backup at {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("handshake with {peer} failed: {problem}")]
    Handshake {
        peer: SocketAddr,
        #[source]
        problem: HandshakeError,
    },
    /// The backup refused the primary's header; the reason is the backup's.
    #[error("the backup refused this primary: {0}")]
    Refused(String),
    /// This backup refused the primary's header; the reason is ours.
    #[error("refused the primary: {0}")]
    Mismatch(String),
    #[error("gave up waiting for the peer")]
    GaveUp,
    #[error("logging channel I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
    #[error("it is empty")]
    Empty,
    #[error("it holds more than {MAX_KEY_FILE} bytes, so it is not a key")]
    TooLarge,
    #[error("a key of {0} bytes is too short; use at least {MIN_KEY_LEN} random bytes")]
    TooShort(usize),
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer does not speak ftvm's logging protocol (bad magic)")]
    BadMagic,
    #[error("the peer speaks protocol version {theirs}, this ftvm speaks {ours}")]
    Version { ours: u16, theirs: u16 },
    #[error("the peer's role is {found}, expected {expected}")]
    Role {
        expected: &'static str,
        found: String,
    },
    #[error("authentication failed: the peer does not know the key")]
    Authentication,
    #[error("authentication failed: the peer rejected our proof, so its key differs from ours")]
    Rejected,
    #[error("the peer sent 0x{0:02x} where a proof was due")]
    UnexpectedReply(u8),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("gave up waiting")]
    GaveUp,
    #[error("the peer closed the connection")]
    Closed,
    #[error("cannot draw a random nonce: {0}")]
    Random(String),
    /// While the header and the answer to it travel.
    #[error("{0}")]
    Frame(#[source] FrameError),
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
