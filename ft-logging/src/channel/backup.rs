//! The backup's side of a paired link: it receives the primary's log,
//! acknowledges each batch and heartbeat on receipt, and reports progress.

use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender};

use super::frame::{FrameError, FrameReader, FrameWriter};
use super::link::{self, LinkState, Outbox, Step, Workers};
use super::listener::Door;
use super::message::{Message, ToBackup, ToPrimary};
use super::{ChannelConfig, ChannelError, Lost, Released};
use crate::{Decoded, Decoder, Record};

/// What the backup hears from its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromPrimary {
    /// Records, in log order; with them the log holds all events through
    /// exit `through_exit`.
    Batch {
        /// The records, in log order.
        records: Vec<Record>,
        /// Every input through this exit is in the log.
        through_exit: u64,
        /// How much output the primary has released.
        released: Released,
        /// The size of the records as they travelled.
        bytes: u64,
    },
    /// Nothing new: the marker and the release counts again, as a sign of life.
    Heartbeat {
        /// Every input through this exit is in the log.
        through_exit: u64,
        /// How much output the primary has released.
        released: Released,
    },
    /// The primary has released everything and closed: it will not come
    /// back, and no loss is reported after this.
    Goodbye,
    /// The primary is gone; nothing follows.
    Lost(Lost),
}

/// A backup paired with its primary. Dropping it closes the connection and
/// stops its threads and the listener's.
#[derive(Debug)]
pub struct BackupLink {
    /// The primary's address, if the connection still knew it.
    peer: Option<SocketAddr>,
    replies: Sender<Reply>,
    from_primary: Receiver<FromPrimary>,
    /// Dropped before `_door`: the link's threads stop first.
    _workers: Workers,
    /// Refuses other primaries while the pair lasts.
    _door: Door,
}

impl BackupLink {
    /// Starts the link's threads once `frames` has delivered the header and
    /// `replies` accepted it.
    pub(super) fn start(
        link: std::sync::Arc<LinkState>,
        frames: FrameReader<ToBackup>,
        replies: FrameWriter,
        config: &ChannelConfig,
        door: Door,
    ) -> Result<Self, ChannelError> {
        let peer = link.peer_addr();
        let (replies_in, queue) = crossbeam_channel::unbounded();
        let (out, from_primary) = crossbeam_channel::unbounded();
        let mut workers = Workers::new(link.clone());
        workers.spawn("ftvm-log-reader", {
            let (link, out, replies_in) = (link.clone(), out.clone(), replies_in.clone());
            move || {
                if let Some(lost) = read_primary(frames, &link, &out, &replies_in) {
                    let _ = out.send(FromPrimary::Lost(lost));
                }
            }
        })?;
        let heartbeat = config.heartbeat;
        workers.spawn("ftvm-log-writer", move || {
            let mut outbox = BackupOutbox { progress: None };
            if let Some(lost) = link::run_writer(&mut outbox, &queue, replies, heartbeat, &link) {
                let _ = out.send(FromPrimary::Lost(lost));
            }
        })?;
        Ok(Self {
            peer,
            replies: replies_in,
            from_primary,
            _workers: workers,
            _door: door,
        })
    }

    /// The primary's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// What the primary sends, as it arrives.
    pub fn from_primary(&self) -> Receiver<FromPrimary> {
        self.from_primary.clone()
    }

    /// Tells the primary how far replay has come; only the latest value
    /// goes out when several are queued.
    pub fn progress(&self, exit: u64, virtual_ns: u64) {
        let _ = self.replies.send(Reply::Progress { exit, virtual_ns });
    }
}

impl Drop for BackupLink {
    fn drop(&mut self) {
        // `_workers` then closes the connection and waits for both
        // threads, and `_door` stops the listener.
        let _ = self.replies.send(Reply::Stop);
    }
}

#[derive(Debug)]
enum Reply {
    Ack {
        through_exit: u64,
        echo_ns: u64,
    },
    Progress {
        exit: u64,
        virtual_ns: u64,
    },
    /// The primary said goodbye: send what is left, then close.
    Finish,
    Stop,
}

struct BackupOutbox {
    progress: Option<(u64, u64)>,
}

impl BackupOutbox {
    fn take_progress(&mut self) -> Option<ToPrimary> {
        let (exit, virtual_ns) = self.progress.take()?;
        Some(ToPrimary::Progress { exit, virtual_ns })
    }
}

impl Outbox for BackupOutbox {
    type Item = Reply;
    type Message = ToPrimary;

    fn handle(&mut self, item: Reply) -> Step<ToPrimary> {
        match item {
            Reply::Ack {
                through_exit,
                echo_ns,
            } => Step::Send(ToPrimary::Ack {
                through_exit,
                echo_ns,
            }),
            Reply::Progress { exit, virtual_ns } => {
                self.progress = Some((exit, virtual_ns));
                Step::Skip
            }
            Reply::Finish => Step::Close(self.take_progress()),
            Reply::Stop => Step::Stop,
        }
    }

    fn heartbeat(&self) -> ToPrimary {
        ToPrimary::Heartbeat
    }

    fn deferred(&mut self) -> Option<ToPrimary> {
        self.take_progress()
    }
}

/// Passes the primary's log on, acknowledging it as it arrives, until the
/// link ends; returns the loss to report, if any.
fn read_primary(
    mut frames: FrameReader<ToBackup>,
    link: &LinkState,
    out: &Sender<FromPrimary>,
    replies: &Sender<Reply>,
) -> Option<Lost> {
    // One stream of records across batches: each is relative to the last.
    let mut decoder = Decoder::new();
    // The primary's send time of the latest message, echoed in every
    // acknowledgement: it renews the primary's lease.
    let mut echo_ns = 0;
    let error = loop {
        let message = match frames.read() {
            Ok(ToBackup::Batch {
                through_exit,
                released,
                sent_ns,
                records,
            }) => match decode_batch(&mut decoder, &records) {
                Ok(decoded) => {
                    echo_ns = echo_ns.max(sent_ns);
                    FromPrimary::Batch {
                        bytes: records.len() as u64,
                        records: decoded,
                        through_exit,
                        released,
                    }
                }
                Err(error) => break error,
            },
            Ok(ToBackup::Heartbeat {
                through_exit,
                released,
                sent_ns,
            }) => {
                echo_ns = echo_ns.max(sent_ns);
                FromPrimary::Heartbeat {
                    through_exit,
                    released,
                }
            }
            Ok(ToBackup::Goodbye) => {
                link.end();
                let _ = out.send(FromPrimary::Goodbye);
                let _ = replies.send(Reply::Finish);
                return None;
            }
            Ok(other @ ToBackup::Header { .. }) => {
                break FrameError::Unexpected { kind: other.name() };
            }
            Err(error) => break error,
        };
        // Acknowledged on receipt, before replay.
        if let FromPrimary::Batch { through_exit, .. }
        | FromPrimary::Heartbeat { through_exit, .. } = message
        {
            let _ = replies.send(Reply::Ack {
                through_exit,
                echo_ns,
            });
        }
        let _ = out.send(message);
    };
    link.lose(&error)
}

/// The records of one batch, which holds whole frames only.
fn decode_batch(decoder: &mut Decoder, mut bytes: &[u8]) -> Result<Vec<Record>, FrameError> {
    let malformed = |problem| FrameError::Malformed {
        kind: "batch",
        problem,
    };
    let mut records = Vec::new();
    while !bytes.is_empty() {
        match decoder.decode(bytes) {
            Ok(Decoded::Record(record, len)) => {
                records.push(record);
                bytes = &bytes[len..];
            }
            Ok(Decoded::Incomplete) => return Err(malformed("it ends inside a record".into())),
            Err(error) => return Err(malformed(format!("record {}: {error}", records.len()))),
        }
    }
    Ok(records)
}
