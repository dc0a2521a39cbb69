//! The primary's side: it connects, sends its header, then streams batches
//! and heartbeats while it hears acknowledgements and progress.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::frame::{FrameError, FrameReader, FrameWriter};
use super::handshake::Patience;
use super::link::{self, LinkState, Outbox, Step, Workers};
use super::message::{Message, ToBackup, ToPrimary};
use super::{
    ChannelConfig, ChannelError, DiskSample, HANDSHAKE_TIMEOUT, HandshakeError, Lease, Lost,
    MAX_BATCH, PrimaryHello, Released, handshake,
};
use crate::encode_header;

/// What the primary hears from its backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromBackup {
    /// The backup has received the log through exit `through_exit`.
    Ack {
        /// Every input through this exit has arrived.
        through_exit: u64,
    },
    /// The backup has replayed through exit `exit`, at this virtual time.
    Progress {
        /// The exit it replayed last.
        exit: u64,
        /// Its guest's virtual time then.
        virtual_ns: u64,
    },
    /// A standby holds the whole state taken after this exit.
    Holding {
        /// The exit the state was taken after.
        exit: u64,
    },
    /// The backup is gone; nothing follows.
    Lost(Lost),
}

/// Connects to the backup at `addr`, authenticates, and offers `hello`
/// (with `hello.join`, to a standby). Succeeds once the backup has accepted
/// the header. One attempt: see [`dial`](super::dial) for a primary that
/// waits for its backup.
pub fn connect(
    addr: SocketAddr,
    config: &ChannelConfig,
    hello: &PrimaryHello,
) -> Result<PrimaryLink, ChannelError> {
    let patience = Patience {
        deadline: Instant::now() + HANDSHAKE_TIMEOUT,
        give_up: &|| false,
    };
    connect_within(addr, config, hello, patience)
}

/// [`connect`], with the connection and the handshake bounded by
/// `patience`; the backup's answer to the header is still awaited for
/// [`HANDSHAKE_TIMEOUT`] (unless `give_up`), since by then it may have
/// paired.
pub(super) fn connect_within(
    addr: SocketAddr,
    config: &ChannelConfig,
    hello: &PrimaryHello,
    patience: Patience<'_>,
) -> Result<PrimaryLink, ChannelError> {
    config.validate()?;
    let mut header = Vec::new();
    encode_header(&hello.header, &mut header).map_err(ChannelError::Header)?;
    let failed = |problem| match problem {
        HandshakeError::GaveUp => ChannelError::GaveUp,
        problem => ChannelError::Handshake {
            peer: addr,
            problem,
        },
    };
    let timed_out = || ChannelError::Connect {
        addr,
        source: io::ErrorKind::TimedOut.into(),
    };
    let connect_time = patience.remaining().ok_or_else(timed_out)?;
    let stream = TcpStream::connect_timeout(&addr, connect_time.min(HANDSHAKE_TIMEOUT))
        .map_err(|source| ChannelError::Connect { addr, source })?;
    stream.set_nodelay(true)?;
    let session = handshake::as_primary(&stream, &config.key, patience).map_err(failed)?;
    let stream_for_answer = stream.try_clone()?;
    let link = LinkState::new("backup", stream.try_clone()?);
    let mut frames = FrameWriter::new(stream.try_clone()?, session.to_backup);
    let mut replies = FrameReader::<ToPrimary>::new(stream, session.to_primary, link.clone());
    frames.set_timeout(HANDSHAKE_TIMEOUT)?;
    let generation = hello.generation;
    frames
        .send(&ToBackup::Header {
            generation,
            header,
            join: hello.join,
        })
        .and_then(|()| frames.flush())
        .map_err(|error| failed(HandshakeError::Frame(error)))?;
    let answer = Patience {
        deadline: Instant::now() + HANDSHAKE_TIMEOUT,
        give_up: patience.give_up,
    };
    handshake::await_answer(&stream_for_answer, answer).map_err(failed)?;
    replies.set_timeout(HANDSHAKE_TIMEOUT)?;
    replies
        .read()
        .map_err(|error| failed(HandshakeError::Frame(error)))
        .and_then(|reply| match reply {
            ToPrimary::Accept => Ok(()),
            ToPrimary::Refuse { reason } => Err(ChannelError::Refused(reason)),
            other => Err(failed(HandshakeError::Frame(FrameError::Unexpected {
                kind: other.name(),
            }))),
        })?;
    frames.set_timeout(config.timeout)?;
    replies.set_timeout(config.timeout)?;
    tracing::info!(backup = %addr, generation, "paired with a backup");

    let (queue_in, queue) = crossbeam_channel::unbounded();
    let (out, from_backup) = crossbeam_channel::unbounded();
    let sender = LogSender {
        queue: queue_in,
        queued: Arc::default(),
    };
    let goodbye = Arc::new(OnceLock::new());
    let lease = Lease::new();
    let mut workers = Workers::new(link.clone());
    workers.spawn("ftvm-log-reader", {
        let (link, out, goodbye, lease) =
            (link.clone(), out.clone(), goodbye.clone(), lease.clone());
        move || {
            if let Some(lost) = read_backup(replies, &link, &out, &goodbye, &lease) {
                let _ = out.send(FromBackup::Lost(lost));
            }
        }
    })?;
    let mut outbox = PrimaryOutbox {
        lease: lease.clone(),
        marker: (0, Released::default()),
        queued: sender.queued.clone(),
        goodbye,
    };
    let heartbeat = config.heartbeat;
    workers.spawn("ftvm-log-writer", move || {
        if let Some(lost) = link::run_writer(&mut outbox, &queue, frames, heartbeat, &link) {
            let _ = out.send(FromBackup::Lost(lost));
        }
        // What never went out no longer sits in the queue.
        for item in queue.try_iter() {
            outbox.handle(item);
        }
    })?;
    Ok(PrimaryLink {
        sender,
        from_backup,
        workers,
        linger: config.timeout,
        lease,
    })
}

/// A primary paired with its backup. Dropping it closes the connection and
/// stops its threads.
#[derive(Debug)]
pub struct PrimaryLink {
    sender: LogSender,
    from_backup: Receiver<FromBackup>,
    workers: Workers,
    /// How long `close` waits for the backup to close its side.
    linger: Duration,
    lease: Lease,
}

impl PrimaryLink {
    /// The handle that sends the log to the backup.
    pub fn sender(&self) -> LogSender {
        self.sender.clone()
    }

    /// What the backup sends, as it arrives.
    pub fn from_backup(&self) -> Receiver<FromBackup> {
        self.from_backup.clone()
    }

    /// How recently the backup acknowledged what this primary sent.
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    /// Says goodbye after everything queued and waits until the writer has
    /// sent it (or found the link broken), so the backup learns that the
    /// primary ended before the connection closes.
    pub fn close(mut self) {
        self.sender.goodbye();
        // The writer was spawned last; it ends after sending Goodbye.
        self.workers.join_last();
        // The backup closes its side once it has read Goodbye. Closing ours
        // first would reset the connection under its last acknowledgements,
        // and it could report a loss; so the reader may read to the end.
        self.workers.linger(self.linger);
    }

    /// [`close`](Self::close) in at most `limit`: a primary that is being
    /// stopped does not wait out the timeout of a backup that stopped
    /// reading. Past the limit the connection is closed as it is.
    pub fn close_within(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.sender.goodbye();
        if self.workers.join_last_by(deadline) {
            let left = deadline.saturating_duration_since(Instant::now());
            self.workers.linger(left.min(self.linger));
        }
    }
}

impl Drop for PrimaryLink {
    fn drop(&mut self) {
        // The writer may be waiting on its queue; `workers` then closes the
        // connection and waits for both threads.
        let _ = self.sender.queue.send(Outgoing::Stop);
    }
}

/// Queues the log for the link's writer; never waits on the network.
#[derive(Debug, Clone)]
pub struct LogSender {
    queue: Sender<Outgoing>,
    queued: Arc<AtomicU64>,
}

impl LogSender {
    /// Queues encoded record frames (whole ones, from one [`Encoder`] across
    /// batches): with them, the log holds all events through exit
    /// `through_exit`, and output through `released` has been released.
    ///
    /// # Panics
    ///
    /// If `records` is longer than [`MAX_BATCH`].
    ///
    /// [`Encoder`]: crate::Encoder
    pub fn batch(&self, records: Vec<u8>, through_exit: u64, released: Released) {
        assert!(
            records.len() <= MAX_BATCH,
            "a batch of {} bytes exceeds the limit of {MAX_BATCH}",
            records.len()
        );
        let len = records.len() as u64;
        self.queued.fetch_add(len, Ordering::SeqCst);
        let batch = Outgoing::Batch {
            records,
            through_exit,
            released,
        };
        if self.queue.send(batch).is_err() {
            self.queued.fetch_sub(len, Ordering::SeqCst);
        }
    }

    /// Queues part of a live transfer: a set of pages, the machine's state
    /// or the disk check, which go out in order with the log.
    fn transfer(&self, message: ToBackup, len: usize) {
        self.queued.fetch_add(len as u64, Ordering::SeqCst);
        if self
            .queue
            .send(Outgoing::Transfer { message, len })
            .is_err()
        {
            self.queued.fetch_sub(len as u64, Ordering::SeqCst);
        }
    }

    /// Queues a set of pages of the VM (`vm-state`'s encoding).
    ///
    /// # Panics
    ///
    /// If `pages` is longer than [`MAX_TRANSFER_PART`](super::MAX_TRANSFER_PART).
    pub fn pages(&self, pages: Vec<u8>) {
        assert!(
            pages.len() <= super::MAX_TRANSFER_PART,
            "a page set too large"
        );
        let len = pages.len();
        self.transfer(ToBackup::Pages(pages), len);
    }

    /// Queues the machine's state at the cutover (`vm-state`'s encoding).
    ///
    /// # Panics
    ///
    /// If `state` is longer than [`MAX_TRANSFER_PART`](super::MAX_TRANSFER_PART).
    pub fn state(&self, state: Vec<u8>) {
        assert!(state.len() <= super::MAX_TRANSFER_PART, "a state too large");
        let len = state.len();
        self.transfer(ToBackup::State(state), len);
    }

    /// Queues the sampled sectors of the disk.
    ///
    /// # Panics
    ///
    /// With more than [`MAX_DISK_SAMPLES`](super::MAX_DISK_SAMPLES) samples.
    pub fn disk_check(&self, samples: Vec<DiskSample>) {
        assert!(
            samples.len() <= super::MAX_DISK_SAMPLES,
            "too many disk samples"
        );
        let len = samples.len() * size_of::<DiskSample>();
        self.transfer(ToBackup::DiskCheck(samples), len);
    }

    /// Sets what the writer's heartbeats say from now on. It goes through
    /// the queue, so no heartbeat claims exits whose batches are still
    /// queued.
    pub fn heartbeat_state(&self, through_exit: u64, released: Released) {
        let _ = self.queue.send(Outgoing::Marker {
            through_exit,
            released,
        });
    }

    /// Tells the backup whether flow control holds the guest now, waiting
    /// for it: a replay kept at low priority should hurry.
    pub fn stalled(&self, stalled: bool) {
        let _ = self.queue.send(Outgoing::Stall(stalled));
    }

    /// Sends Goodbye after everything queued, then ends the sending side.
    /// The link still hears the backup's last acknowledgements; if the
    /// backup then closes after acknowledging everything sent, that is no
    /// loss.
    pub fn goodbye(&self) {
        let _ = self.queue.send(Outgoing::Goodbye);
    }

    /// Bytes of batches and transfer parts waiting for the writer.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
enum Outgoing {
    Batch {
        records: Vec<u8>,
        through_exit: u64,
        released: Released,
    },
    Marker {
        through_exit: u64,
        released: Released,
    },
    /// Part of a live transfer, of `len` bytes.
    Transfer {
        message: ToBackup,
        len: usize,
    },
    Stall(bool),
    Goodbye,
    Stop,
}

struct PrimaryOutbox {
    /// Dates every batch and heartbeat.
    lease: Lease,
    /// What heartbeats say: through exit, released console bytes.
    marker: (u64, Released),
    queued: Arc<AtomicU64>,
    /// The exit the log had reached when Goodbye was sent.
    goodbye: Arc<OnceLock<u64>>,
}

impl Outbox for PrimaryOutbox {
    type Item = Outgoing;
    type Message = ToBackup;

    fn handle(&mut self, item: Outgoing) -> Step<ToBackup> {
        match item {
            Outgoing::Batch {
                records,
                through_exit,
                released,
            } => {
                self.queued
                    .fetch_sub(records.len() as u64, Ordering::SeqCst);
                self.marker = (through_exit, released);
                Step::Send(ToBackup::Batch {
                    through_exit,
                    released,
                    sent_ns: self.lease.now_ns(),
                    records,
                })
            }
            Outgoing::Marker {
                through_exit,
                released,
            } => {
                self.marker = (through_exit, released);
                Step::Skip
            }
            Outgoing::Transfer { message, len } => {
                self.queued.fetch_sub(len as u64, Ordering::SeqCst);
                Step::Send(message)
            }
            Outgoing::Stall(stalled) => Step::Send(ToBackup::Stall { stalled }),
            Outgoing::Goodbye => {
                let _ = self.goodbye.set(self.marker.0);
                Step::Close(Some(ToBackup::Goodbye))
            }
            Outgoing::Stop => Step::Stop,
        }
    }

    fn heartbeat(&self) -> ToBackup {
        let (through_exit, released) = self.marker;
        ToBackup::Heartbeat {
            through_exit,
            released,
            sent_ns: self.lease.now_ns(),
        }
    }

    fn deferred(&mut self) -> Option<ToBackup> {
        None
    }
}

/// Passes the backup's messages on until the link ends; returns the loss to
/// report, if any.
fn read_backup(
    mut replies: FrameReader<ToPrimary>,
    link: &LinkState,
    out: &Sender<FromBackup>,
    goodbye: &OnceLock<u64>,
    lease: &Lease,
) -> Option<Lost> {
    let mut acked = None;
    let error = loop {
        let message = match replies.read() {
            Ok(ToPrimary::Ack {
                through_exit,
                echo_ns,
            }) => {
                lease.renew(echo_ns);
                acked = acked.max(Some(through_exit));
                FromBackup::Ack { through_exit }
            }
            Ok(ToPrimary::Progress { exit, virtual_ns }) => {
                FromBackup::Progress { exit, virtual_ns }
            }
            Ok(ToPrimary::Holding { exit }) => FromBackup::Holding { exit },
            Ok(ToPrimary::Heartbeat) => continue,
            Ok(other @ (ToPrimary::Accept | ToPrimary::Refuse { .. })) => {
                break FrameError::Unexpected { kind: other.name() };
            }
            Err(FrameError::Closed) => match goodbye.get() {
                Some(&last) if acked >= Some(last) => {
                    link.end();
                    return None;
                }
                _ => break FrameError::Closed,
            },
            Err(error) => break error,
        };
        let _ = out.send(message);
    };
    link.lose(&error)
}
