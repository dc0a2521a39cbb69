//! The messages a link carries and their payloads: integers are u64 little
//! endian, and bytes (records, a header, a reason) run to the payload's end.

use super::{DiskSample, FrameError, Released};
use crate::MAX_HEADER_FRAME;

/// The most record bytes one batch may carry.
pub const MAX_BATCH: usize = 64 << 20;
/// The most bytes of one part of a live transfer (a set of pages, the
/// machine's state).
pub const MAX_TRANSFER_PART: usize = 64 << 20;
/// The most sectors a disk check may sample.
pub const MAX_DISK_SAMPLES: usize = 1024;
/// A sampled sector: its number and SHA-256.
const SAMPLE_LEN: usize = 8 + 32;
/// The longest refusal reason sent; a longer one is cut.
const MAX_REASON: usize = 1024;
/// A generation, and a header frame: its length (a varint of at most 10
/// bytes), body and checksum.
const MAX_HEADER_PAYLOAD: usize = 8 + 10 + MAX_HEADER_FRAME as usize + 4;

const HEADER: u8 = 0x01;
const BATCH: u8 = 0x02;
const PRIMARY_HEARTBEAT: u8 = 0x03;
const GOODBYE: u8 = 0x04;
const JOIN: u8 = 0x05;
const PAGES: u8 = 0x06;
const STATE: u8 = 0x07;
const DISK_CHECK: u8 = 0x08;
const STALL: u8 = 0x09;
const ACCEPT: u8 = 0x81;
const REFUSE: u8 = 0x82;
const ACK: u8 = 0x83;
const PROGRESS: u8 = 0x84;
const BACKUP_HEARTBEAT: u8 = 0x85;
const HOLDING: u8 = 0x86;

/// The messages of one direction.
pub(super) trait Message: Sized {
    /// The largest payload a message of this kind may have; `None` for a
    /// kind this direction does not carry.
    fn payload_limit(kind: u8) -> Option<usize>;
    fn kind_name(kind: u8) -> &'static str;
    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError>;
    fn kind(&self) -> u8;
    /// Appends the payload's fixed part to `head` and returns the rest, so
    /// that bulk bytes are not copied.
    fn encode<'a>(&'a self, head: &mut Vec<u8>) -> &'a [u8];

    fn name(&self) -> &'static str {
        Self::kind_name(self.kind())
    }
}

/// Primary → backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToBackup {
    /// `header` is the header's codec frame, from `encode_header`; `join`
    /// (sent as its own kind) offers a running VM to a standby.
    Header {
        generation: u64,
        header: Vec<u8>,
        join: bool,
    },
    /// Part of a running VM's memory, encoded by the `vm-state` crate.
    Pages(Vec<u8>),
    /// The machine's state at the cutover, encoded by the `vm-state` crate.
    State(Vec<u8>),
    /// Sampled sectors of the primary's disk, read once every write
    /// through the cutover was done.
    DiskCheck(Vec<DiskSample>),
    /// `records` are whole record frames from the primary's encoder;
    /// `sent_ns` is when it was sent, on the primary's clock (see [`Lease`]).
    ///
    /// [`Lease`]: super::Lease
    Batch {
        through_exit: u64,
        released: Released,
        sent_ns: u64,
        records: Vec<u8>,
    },
    Heartbeat {
        through_exit: u64,
        released: Released,
        sent_ns: u64,
    },
    Goodbye,
    /// Whether flow control holds the primary's guest: sent when it starts
    /// and when it ends.
    Stall {
        stalled: bool,
    },
}

impl Message for ToBackup {
    fn payload_limit(kind: u8) -> Option<usize> {
        match kind {
            HEADER | JOIN => Some(MAX_HEADER_PAYLOAD),
            BATCH => Some(32 + MAX_BATCH),
            PAGES | STATE => Some(MAX_TRANSFER_PART),
            DISK_CHECK => Some(MAX_DISK_SAMPLES * SAMPLE_LEN),
            PRIMARY_HEARTBEAT => Some(32),
            GOODBYE => Some(0),
            STALL => Some(8),
            _ => None,
        }
    }

    fn kind_name(kind: u8) -> &'static str {
        match kind {
            HEADER => "header",
            JOIN => "join",
            PAGES => "pages",
            STATE => "state",
            DISK_CHECK => "disk check",
            BATCH => "batch",
            PRIMARY_HEARTBEAT => "heartbeat",
            GOODBYE => "goodbye",
            STALL => "stall",
            _ => "unknown",
        }
    }

    fn decode(kind: u8, mut payload: Vec<u8>) -> Result<Self, FrameError> {
        let name = Self::kind_name(kind);
        Ok(match kind {
            HEADER | JOIN => {
                let [generation] = integers(name, &payload, Rest::Bytes)?;
                payload.drain(..8);
                Self::Header {
                    generation,
                    header: payload,
                    join: kind == JOIN,
                }
            }
            PAGES => Self::Pages(payload),
            STATE => Self::State(payload),
            DISK_CHECK => {
                if !payload.len().is_multiple_of(SAMPLE_LEN) {
                    return Err(FrameError::Malformed {
                        kind: name,
                        problem: format!("a payload of {} bytes", payload.len()),
                    });
                }
                Self::DiskCheck(
                    payload
                        .chunks_exact(SAMPLE_LEN)
                        .map(|sample| DiskSample {
                            sector: u64::from_le_bytes(sample[..8].try_into().expect("8 bytes")),
                            sha256: sample[8..].try_into().expect("32 bytes"),
                        })
                        .collect(),
                )
            }
            BATCH => {
                let [through_exit, console, frames, sent_ns] =
                    integers(name, &payload, Rest::Bytes)?;
                payload.drain(..32);
                Self::Batch {
                    through_exit,
                    released: Released { console, frames },
                    sent_ns,
                    records: payload,
                }
            }
            PRIMARY_HEARTBEAT => {
                let [through_exit, console, frames, sent_ns] =
                    integers(name, &payload, Rest::None)?;
                Self::Heartbeat {
                    through_exit,
                    released: Released { console, frames },
                    sent_ns,
                }
            }
            GOODBYE => {
                let [] = integers(name, &payload, Rest::None)?;
                Self::Goodbye
            }
            STALL => match integers(name, &payload, Rest::None)? {
                [0] => Self::Stall { stalled: false },
                [1] => Self::Stall { stalled: true },
                [other] => {
                    return Err(FrameError::Malformed {
                        kind: name,
                        problem: format!("a stall flag of {other}"),
                    });
                }
            },
            _ => unreachable!("the frame reader passes only kinds with a payload limit"),
        })
    }

    fn kind(&self) -> u8 {
        match self {
            Self::Header { join: false, .. } => HEADER,
            Self::Header { join: true, .. } => JOIN,
            Self::Pages(_) => PAGES,
            Self::State(_) => STATE,
            Self::DiskCheck(_) => DISK_CHECK,
            Self::Batch { .. } => BATCH,
            Self::Heartbeat { .. } => PRIMARY_HEARTBEAT,
            Self::Goodbye => GOODBYE,
            Self::Stall { .. } => STALL,
        }
    }

    fn encode<'a>(&'a self, head: &mut Vec<u8>) -> &'a [u8] {
        match self {
            Self::Header {
                generation, header, ..
            } => {
                head.extend_from_slice(&generation.to_le_bytes());
                header
            }
            Self::Pages(bytes) | Self::State(bytes) => bytes,
            Self::DiskCheck(samples) => {
                for sample in samples {
                    head.extend_from_slice(&sample.sector.to_le_bytes());
                    head.extend_from_slice(&sample.sha256);
                }
                &[]
            }
            Self::Batch {
                through_exit,
                released,
                sent_ns,
                records,
            } => {
                for word in [through_exit, &released.console, &released.frames, sent_ns] {
                    head.extend_from_slice(&word.to_le_bytes());
                }
                records
            }
            Self::Heartbeat {
                through_exit,
                released,
                sent_ns,
            } => {
                for word in [through_exit, &released.console, &released.frames, sent_ns] {
                    head.extend_from_slice(&word.to_le_bytes());
                }
                &[]
            }
            Self::Goodbye => &[],
            Self::Stall { stalled } => {
                head.extend_from_slice(&u64::from(*stalled).to_le_bytes());
                &[]
            }
        }
    }
}

/// Backup → primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToPrimary {
    Accept,
    Refuse {
        reason: String,
    },
    /// `echo_ns` is the `sent_ns` of the latest batch or heartbeat received.
    Ack {
        through_exit: u64,
        echo_ns: u64,
    },
    Progress {
        exit: u64,
        virtual_ns: u64,
    },
    Heartbeat,
    /// A standby holds the whole state taken after exit `exit`: from now
    /// on it acknowledges the log.
    Holding {
        exit: u64,
    },
}

impl Message for ToPrimary {
    fn payload_limit(kind: u8) -> Option<usize> {
        match kind {
            ACCEPT | BACKUP_HEARTBEAT => Some(0),
            REFUSE => Some(MAX_REASON),
            ACK | PROGRESS => Some(16),
            HOLDING => Some(8),
            _ => None,
        }
    }

    fn kind_name(kind: u8) -> &'static str {
        match kind {
            ACCEPT => "accept",
            REFUSE => "refuse",
            ACK => "ack",
            PROGRESS => "progress",
            BACKUP_HEARTBEAT => "heartbeat",
            HOLDING => "holding",
            _ => "unknown",
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        let name = Self::kind_name(kind);
        Ok(match kind {
            ACCEPT => {
                let [] = integers(name, &payload, Rest::None)?;
                Self::Accept
            }
            REFUSE => Self::Refuse {
                reason: String::from_utf8_lossy(&payload).into_owned(),
            },
            ACK => {
                let [through_exit, echo_ns] = integers(name, &payload, Rest::None)?;
                Self::Ack {
                    through_exit,
                    echo_ns,
                }
            }
            PROGRESS => {
                let [exit, virtual_ns] = integers(name, &payload, Rest::None)?;
                Self::Progress { exit, virtual_ns }
            }
            BACKUP_HEARTBEAT => {
                let [] = integers(name, &payload, Rest::None)?;
                Self::Heartbeat
            }
            HOLDING => {
                let [exit] = integers(name, &payload, Rest::None)?;
                Self::Holding { exit }
            }
            _ => unreachable!("the frame reader passes only kinds with a payload limit"),
        })
    }

    fn kind(&self) -> u8 {
        match self {
            Self::Accept => ACCEPT,
            Self::Refuse { .. } => REFUSE,
            Self::Ack { .. } => ACK,
            Self::Progress { .. } => PROGRESS,
            Self::Heartbeat => BACKUP_HEARTBEAT,
            Self::Holding { .. } => HOLDING,
        }
    }

    fn encode<'a>(&'a self, head: &mut Vec<u8>) -> &'a [u8] {
        match self {
            Self::Accept | Self::Heartbeat => &[],
            Self::Refuse { reason } => &reason.as_bytes()[..reason.floor_char_boundary(MAX_REASON)],
            Self::Ack {
                through_exit,
                echo_ns,
            } => {
                head.extend_from_slice(&through_exit.to_le_bytes());
                head.extend_from_slice(&echo_ns.to_le_bytes());
                &[]
            }
            Self::Progress { exit, virtual_ns } => {
                head.extend_from_slice(&exit.to_le_bytes());
                head.extend_from_slice(&virtual_ns.to_le_bytes());
                &[]
            }
            Self::Holding { exit } => {
                head.extend_from_slice(&exit.to_le_bytes());
                &[]
            }
        }
    }
}

/// What may follow a payload's integers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rest {
    None,
    Bytes,
}

/// The `N` integers at the start of a payload.
fn integers<const N: usize>(
    kind: &'static str,
    payload: &[u8],
    rest: Rest,
) -> Result<[u64; N], FrameError> {
    let fixed = N * 8;
    let fits = match rest {
        Rest::None => payload.len() == fixed,
        Rest::Bytes => payload.len() >= fixed,
    };
    if !fits {
        return Err(FrameError::Malformed {
            kind,
            problem: format!("a payload of {} bytes", payload.len()),
        });
    }
    Ok(std::array::from_fn(|i| {
        let mut word = [0; 8];
        word.copy_from_slice(&payload[i * 8..i * 8 + 8]);
        u64::from_le_bytes(word)
    }))
}
