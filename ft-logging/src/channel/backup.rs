//! The backup's side of a paired link: it receives the primary's log,
//! acknowledges each batch and heartbeat on receipt, and reports progress.
//! A standby's link first receives the running VM, and acknowledges
//! nothing until the standby holds all of it.

use std::sync::{Arc, Mutex, PoisonError};

use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender};

use super::frame::{FrameError, FrameReader, FrameWriter};
use super::link::{self, LinkState, Outbox, Step, Workers};
use super::listener::Door;
use super::message::{Message, ToBackup, ToPrimary};
use super::{ChannelConfig, ChannelError, DiskSample, Lost, Released};
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
    /// Part of the running VM a live side sends a standby: a set of memory
    /// pages (`vm-state`'s encoding).
    Pages(Vec<u8>),
    /// The machine's state at the cutover (`vm-state`'s encoding).
    State(Vec<u8>),
    /// The live side's disk, sampled once every write through the cutover
    /// was done.
    DiskCheck(Vec<DiskSample>),
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
    acks: Arc<Mutex<Acks>>,
    stall: Arc<Mutex<PrimaryStall>>,
    /// Dropped before `_door`: the link's threads stop first.
    _workers: Workers,
    /// Refuses other primaries while the pair lasts.
    _door: Door,
}

impl BackupLink {
    /// Starts the link's threads once `frames` has delivered the header and
    /// `replies` accepted it; unless `armed`, nothing is acknowledged until
    /// [`hold`](Self::hold).
    pub(super) fn start(
        link: Arc<LinkState>,
        frames: FrameReader<ToBackup>,
        replies: FrameWriter,
        config: &ChannelConfig,
        door: Door,
        armed: bool,
    ) -> Result<Self, ChannelError> {
        let peer = link.peer_addr();
        let (replies_in, queue) = crossbeam_channel::unbounded();
        let (out, from_primary) = crossbeam_channel::unbounded();
        let acks = Arc::new(Mutex::new(Acks {
            armed,
            pending: None,
        }));
        let stall = Arc::new(Mutex::new(PrimaryStall::default()));
        let mut workers = Workers::new(link.clone());
        workers.spawn("ftvm-log-reader", {
            let (link, out, replies_in, acks, stall) = (
                link.clone(),
                out.clone(),
                replies_in.clone(),
                acks.clone(),
                stall.clone(),
            );
            move || {
                if let Some(lost) = read_primary(frames, &link, &out, &replies_in, &acks, &stall) {
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
            acks,
            stall,
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

    /// Calls `hook` on the link's reader thread whenever the primary says
    /// whether flow control holds its guest (at once if it does now). It
    /// runs while a replay at low priority may be starved of CPU, so it can
    /// raise the replay's priority in time.
    pub fn on_primary_stall(&self, hook: impl Fn(bool) + Send + 'static) {
        let mut stall = self.stall.lock().unwrap_or_else(PoisonError::into_inner);
        if stall.stalled {
            hook(true);
        }
        stall.hook = Some(Box::new(hook));
    }

    /// A standby holds the whole state taken after exit `exit`: tells the
    /// primary, and acknowledges the log from now on, starting with what
    /// arrived meanwhile.
    pub fn hold(&self, exit: u64) {
        let mut acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self.replies.send(Reply::Holding { exit });
        acks.armed = true;
        if let Some(ack) = acks.pending.take() {
            let _ = self.replies.send(ack);
        }
    }
}

/// Whether the link acknowledges what it receives yet, and the latest
/// acknowledgement held back until it does.
#[derive(Debug)]
struct Acks {
    armed: bool,
    pending: Option<Reply>,
}

/// What the primary last said of its flow control, and whom to tell.
#[derive(Default)]
struct PrimaryStall {
    stalled: bool,
    hook: Option<Box<dyn Fn(bool) + Send>>,
}

impl std::fmt::Debug for PrimaryStall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryStall")
            .field("stalled", &self.stalled)
            .field("hook", &self.hook.is_some())
            .finish()
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
    Holding {
        exit: u64,
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
            Reply::Holding { exit } => Step::Send(ToPrimary::Holding { exit }),
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
    acks: &Mutex<Acks>,
    stall: &Mutex<PrimaryStall>,
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
            Ok(ToBackup::Pages(pages)) => FromPrimary::Pages(pages),
            Ok(ToBackup::State(state)) => FromPrimary::State(state),
            Ok(ToBackup::DiskCheck(samples)) => FromPrimary::DiskCheck(samples),
            Ok(ToBackup::Stall { stalled }) => {
                // Acted on here, not queued behind the log the replay has
                // yet to take.
                let mut stall = stall.lock().unwrap_or_else(PoisonError::into_inner);
                stall.stalled = stalled;
                if let Some(hook) = &stall.hook {
                    hook(stalled);
                }
                continue;
            }
            Ok(other @ ToBackup::Header { .. }) => {
                break FrameError::Unexpected { kind: other.name() };
            }
            Err(error) => break error,
        };
        // Acknowledged on receipt, before replay; by a standby only once it
        // holds the state.
        if let FromPrimary::Batch { through_exit, .. }
        | FromPrimary::Heartbeat { through_exit, .. } = message
        {
            let ack = Reply::Ack {
                through_exit,
                echo_ns,
            };
            let mut acks = acks.lock().unwrap_or_else(PoisonError::into_inner);
            if acks.armed {
                let _ = replies.send(ack);
            } else {
                acks.pending = Some(ack);
            }
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
