//! Authenticated, numbered frames:
//! `[u32 length][u8 kind][u64 sequence][payload][HMAC-SHA256]`, little
//! endian, where the length counts everything after itself and the MAC
//! covers (sequence, kind, payload) under the direction's session key.
//! Sequences start at 0 and go up by one, so a frame that was altered,
//! replayed, reordered or dropped on the way ends the link.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hmac::Mac as _;

use super::link::LinkState;
use super::message::Message;

pub(super) type Mac = hmac::Hmac<sha2::Sha256>;

pub(super) const MAC_LEN: usize = 32;
/// Length, kind and sequence.
const PREFIX_LEN: usize = 4 + 1 + 8;
/// What a frame's length counts besides the payload.
const OVERHEAD: usize = 1 + 8 + MAC_LEN;
/// Socket buffers: large enough that small frames go out in one write.
const BUFFER: usize = 64 << 10;

/// Why a link ended: the text of [`Lost::reason`](super::Lost).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("the peer closed the connection in the middle of a frame")]
    Truncated,
    /// Nothing arrived for this long.
    #[error("nothing received for {0:?}")]
    Silent(Duration),
    /// Nothing could be sent for this long: the peer stopped reading.
    #[error("nothing could be sent for {0:?}: the peer stopped reading")]
    Stalled(Duration),
    /// An I/O failure of the connection.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// A frame shorter than its fixed part.
    #[error("protocol violation: a frame of {length} bytes is shorter than its fixed part")]
    TooShort {
        /// Its length in bytes.
        length: usize,
    },
    /// A frame of a kind this side does not know.
    #[error("protocol violation: frame {frame} has an unknown kind 0x{kind:02x}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// The frame's sequence number.
        frame: u64,
    },
    /// A frame's payload exceeds its kind's limit.
    #[error(
        "protocol violation: a {kind} frame's payload of {length} bytes exceeds the limit of {limit}"
    )]
    TooLong {
        /// The kind of message.
        kind: &'static str,
        /// Its length in bytes.
        length: usize,
        /// The most allowed.
        limit: usize,
    },
    /// A frame whose MAC does not hold: it was altered in transit.
    #[error("protocol violation: frame {frame} ({kind}) has a bad MAC: it was altered in transit")]
    BadMac {
        /// The frame's sequence number.
        frame: u64,
        /// The kind of message.
        kind: &'static str,
    },
    /// A frame that came again or out of order.
    #[error(
        "protocol violation: frame {found} ({kind}) was replayed or reordered: frame {expected} was due"
    )]
    Replayed {
        /// The sequence number that came.
        found: u64,
        /// The sequence number that was due.
        expected: u64,
        /// The kind of message.
        kind: &'static str,
    },
    /// Frames are missing: a later one came.
    #[error(
        "protocol violation: frames {expected} to {} are missing (dropped in transit): frame {found} ({kind}) came instead",
        found - 1
    )]
    Missing {
        /// The sequence number that came.
        found: u64,
        /// The sequence number that was due.
        expected: u64,
        /// The kind of message.
        kind: &'static str,
    },
    /// A message that has no place here.
    #[error("protocol violation: an unexpected {kind} message")]
    Unexpected {
        /// The kind of message.
        kind: &'static str,
    },
    /// A message whose payload does not decode.
    #[error("protocol violation: malformed {kind} message: {problem}")]
    Malformed {
        /// The kind of message.
        kind: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Writes one direction's frames.
#[derive(Debug)]
pub(super) struct FrameWriter {
    out: BufWriter<TcpStream>,
    mac: Mac,
    sequence: u64,
    /// How long a write may make no progress before the peer counts as stuck.
    stall: Duration,
    /// The fixed part of the payload being sent, kept for its allocation.
    head: Vec<u8>,
}

impl FrameWriter {
    pub(super) fn new(stream: TcpStream, mac: Mac) -> Self {
        Self {
            out: BufWriter::with_capacity(BUFFER, stream),
            mac,
            sequence: 0,
            stall: Duration::ZERO,
            head: Vec::new(),
        }
    }

    pub(super) fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.out.get_ref().set_write_timeout(Some(timeout))?;
        self.stall = timeout;
        Ok(())
    }

    /// Frames sent so far.
    pub(super) fn sent(&self) -> u64 {
        self.sequence
    }

    /// Buffers one frame; [`flush`](Self::flush) sends it.
    pub(super) fn send<M: Message>(&mut self, message: &M) -> Result<(), FrameError> {
        self.head.clear();
        let kind = message.kind();
        let bulk = message.encode(&mut self.head);
        let length = OVERHEAD + self.head.len() + bulk.len();
        let length = u32::try_from(length).expect("message limits keep frames under 4 GiB");
        let sequence = self.sequence.to_le_bytes();
        let mut mac = self.mac.clone();
        mac.update(&sequence);
        mac.update(&[kind]);
        mac.update(&self.head);
        mac.update(bulk);
        let tag = mac.finalize().into_bytes();
        let out = &mut self.out;
        out.write_all(&length.to_le_bytes())
            .and_then(|()| out.write_all(&[kind]))
            .and_then(|()| out.write_all(&sequence))
            .and_then(|()| out.write_all(&self.head))
            .and_then(|()| out.write_all(bulk))
            .and_then(|()| out.write_all(&tag))
            .map_err(|error| self.failure(error))?;
        self.sequence += 1;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), FrameError> {
        self.out.flush().map_err(|error| self.failure(error))
    }

    /// Sends what is buffered, then ends this direction (the peer reads EOF).
    pub(super) fn close(&mut self) -> Result<(), FrameError> {
        self.flush()?;
        self.out
            .get_ref()
            .shutdown(Shutdown::Write)
            .map_err(|error| self.failure(error))
    }

    fn failure(&self, error: io::Error) -> FrameError {
        if is_timeout(&error) {
            FrameError::Stalled(self.stall)
        } else {
            FrameError::Io(error)
        }
    }
}

/// Reads one direction's frames, as messages of type `M`.
#[derive(Debug)]
pub(super) struct FrameReader<M> {
    input: BufReader<Heard>,
    mac: Mac,
    sequence: u64,
    message: PhantomData<fn() -> M>,
}

impl<M: Message> FrameReader<M> {
    pub(super) fn new(stream: TcpStream, mac: Mac, link: Arc<LinkState>) -> Self {
        let heard = Heard {
            stream,
            link,
            silence: Duration::ZERO,
            shortened: false,
        };
        Self {
            input: BufReader::with_capacity(BUFFER, heard),
            mac,
            sequence: 0,
            message: PhantomData,
        }
    }

    /// Reads end with [`FrameError::Silent`] once nothing has arrived for
    /// `timeout`.
    pub(super) fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let heard = self.input.get_mut();
        heard.stream.set_read_timeout(Some(timeout))?;
        heard.silence = timeout;
        Ok(())
    }

    pub(super) fn read(&mut self) -> Result<M, FrameError> {
        let frame = self.sequence;
        if self.at_end()? {
            return Err(FrameError::Closed);
        }
        let mut prefix = [0; PREFIX_LEN];
        self.fill(&mut prefix)?;
        let [l0, l1, l2, l3, kind, sequence @ ..] = prefix;
        let length = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let sequence = u64::from_le_bytes(sequence);
        // Checked before reading on, so a lying length costs nothing.
        let limit = M::payload_limit(kind).ok_or(FrameError::UnknownKind { kind, frame })?;
        let name = M::kind_name(kind);
        let payload_len = length
            .checked_sub(OVERHEAD)
            .ok_or(FrameError::TooShort { length })?;
        if payload_len > limit {
            return Err(FrameError::TooLong {
                kind: name,
                length: payload_len,
                limit,
            });
        }
        // Grown as bytes arrive rather than allocated up front.
        let mut payload = Vec::with_capacity(payload_len.min(BUFFER));
        let silence = self.input.get_ref().silence;
        let read = (&mut self.input)
            .take(payload_len as u64)
            .read_to_end(&mut payload)
            .map_err(|error| read_failure(error, silence))?;
        if read < payload_len {
            return Err(FrameError::Truncated);
        }
        let mut tag = [0; MAC_LEN];
        self.fill(&mut tag)?;

        let mut mac = self.mac.clone();
        mac.update(&sequence.to_le_bytes());
        mac.update(&[kind]);
        mac.update(&payload);
        mac.verify_slice(&tag)
            .map_err(|_| FrameError::BadMac { frame, kind: name })?;
        if sequence != frame {
            let (found, expected) = (sequence, frame);
            return Err(if found < expected {
                FrameError::Replayed {
                    found,
                    expected,
                    kind: name,
                }
            } else {
                FrameError::Missing {
                    found,
                    expected,
                    kind: name,
                }
            });
        }
        self.sequence += 1;
        M::decode(kind, payload)
    }

    /// Whether the connection ended cleanly, between frames.
    fn at_end(&mut self) -> Result<bool, FrameError> {
        let silence = self.input.get_ref().silence;
        loop {
            match self.input.fill_buf() {
                Ok(buffered) => return Ok(buffered.is_empty()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(read_failure(error, silence)),
            }
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), FrameError> {
        let silence = self.input.get_ref().silence;
        self.input
            .read_exact(buf)
            .map_err(|error| read_failure(error, silence))
    }
}

fn read_failure(error: io::Error, silence: Duration) -> FrameError {
    if is_timeout(&error) {
        FrameError::Silent(silence)
    } else if error.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(error)
    }
}

/// A socket timeout, as Linux reports it.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The read side of the socket, noting when bytes arrive.
#[derive(Debug)]
struct Heard {
    stream: TcpStream,
    link: Arc<LinkState>,
    /// The timeout: reads fail only after this long without a byte.
    silence: Duration,
    /// Whether the socket's timeout is set below `silence`.
    shortened: bool,
}

impl Read for Heard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Ok(read) => {
                    if read > 0 {
                        self.link.heard();
                    }
                    if self.shortened {
                        self.stream.set_read_timeout(Some(self.silence))?;
                        self.shortened = false;
                    }
                    return Ok(read);
                }
                Err(error) if is_timeout(&error) => {
                    // The kernel counts in whole ticks from the start of this
                    // read and may end a little early; the silence counts
                    // from the last byte.
                    let quiet = self.link.last_heard().elapsed();
                    let Some(rest) = self
                        .silence
                        .checked_sub(quiet)
                        .filter(|rest| !rest.is_zero())
                    else {
                        return Err(error);
                    };
                    self.stream.set_read_timeout(Some(rest))?;
                    self.shortened = true;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
