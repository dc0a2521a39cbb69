//! The backup's listener: it waits for a primary that authenticates and
//! then, while the pair lasts, turns every other connection away.
//!
//! Unauthenticated connections cannot keep the primary out: each must send
//! its hello within [`HELLO_TIMEOUT`](super::HELLO_TIMEOUT), and when every
//! handshake slot is taken a new connection displaces the oldest
//! unauthenticated one ([`admission`](super::admission)). They never touch
//! the vCPU: handshakes run on threads of their own.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use socket2::{Domain, Protocol, Socket, Type};

use super::admission::{Admission, HANDSHAKE_SLOTS, Refusals, Slot};
use super::backup::BackupLink;
use super::frame::{FrameError, FrameReader, FrameWriter};
use super::link::LinkState;
use super::message::{Message, ToBackup, ToPrimary};
use super::{
    AuthKey, ChannelConfig, ChannelError, HANDSHAKE_TIMEOUT, HandshakeError, PrimaryHello,
    handshake,
};
use crate::decode_header;

/// How often `accept` asks whether to give up.
const GIVE_UP_POLL: Duration = Duration::from_millis(100);
/// The pause after a failed accept(2), which may fail again at once (for
/// instance out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Connections the kernel queues until the listener's thread accepts them
/// (capped by `net.core.somaxconn`): a burst waits rather than being
/// refused while the thread is not scheduled. std's `bind` queues 128.
const BACKLOG: i32 = 1024;

/// Where the backup is: what happens to a connection depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Paired,
    Closed,
}

const PAIRED: &str = "this backup is already paired";
const CLOSED: &str = "this backup no longer waits for a primary";
const DISPLACED: &str = "displaced by a newer connection before it authenticated";

impl Phase {
    /// Why a connection is refused in this phase, if it is.
    fn refusal(self) -> Option<&'static str> {
        match self {
            Self::Waiting => None,
            Self::Paired => Some(PAIRED),
            Self::Closed => Some(CLOSED),
        }
    }
}

/// The phase, locked while a candidate is offered so that none arrives
/// after pairing unseen.
type SharedPhase = Arc<Mutex<Phase>>;

fn phase(shared: &Mutex<Phase>) -> std::sync::MutexGuard<'_, Phase> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bound socket, waiting for [`accept`](Self::accept).
#[derive(Debug)]
pub struct BackupListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl BackupListener {
    /// Listens on `addr` for a primary.
    pub fn bind(addr: SocketAddr) -> Result<Self, ChannelError> {
        let bound = listen(addr).and_then(|listener| {
            let local = listener.local_addr()?;
            Ok((listener, local))
        });
        let (listener, addr) = bound.map_err(|source| ChannelError::Bind { addr, source })?;
        Ok(Self { listener, addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for a primary that authenticates. A bad peer (wrong key,
    /// garbage, a connection closed mid-message, a stalled handshake) is
    /// refused with a warning (a few at once, then one a second with a count)
    /// and the wait goes on; handshakes run on threads of their own, and a
    /// new connection displaces the oldest unauthenticated one once every
    /// slot is taken, so no number of slow or idle peers holds a primary up.
    ///
    /// `check` decides on the primary's header: an `Err(reason)` refuses it
    /// and ends the wait with [`ChannelError::Mismatch`]. `give_up` is asked
    /// every 100 ms and ends the wait with [`ChannelError::GaveUp`].
    ///
    /// After pairing, the listener goes on, on its own thread, refusing any
    /// other connection until the link is dropped.
    pub fn accept(
        self,
        config: &ChannelConfig,
        check: &dyn Fn(&PrimaryHello) -> Result<(), String>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(BackupLink, PrimaryHello), ChannelError> {
        config.validate()?;
        let (offers, candidates) = crossbeam_channel::unbounded();
        let door = Door::open(self.listener, self.addr, config.key.clone(), offers)?;
        let candidate = loop {
            match candidates.recv_timeout(GIVE_UP_POLL) {
                Ok(candidate) => break candidate,
                Err(RecvTimeoutError::Timeout) if give_up() => return Err(ChannelError::GaveUp),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the listener thread stopped").into());
                }
            }
        };
        let peer = candidate.peer;
        if let Err(reason) = check(&candidate.hello) {
            tracing::warn!(%peer, %reason, "refused the primary's header");
            candidate.refuse(&reason);
            return Err(ChannelError::Mismatch(reason));
        }
        door.pair(|| {
            for late in candidates.try_iter() {
                late.turn_away(PAIRED, &door.refusals);
            }
        });
        let Candidate {
            hello,
            link,
            frames,
            mut replies,
            ..
        } = candidate;
        let failed = |error| ChannelError::Handshake {
            peer,
            problem: HandshakeError::Frame(error),
        };
        replies
            .send(&ToPrimary::Accept)
            .and_then(|()| replies.flush())
            .map_err(failed)?;
        let mut frames = frames;
        frames.set_timeout(config.timeout)?;
        replies.set_timeout(config.timeout)?;
        tracing::info!(%peer, generation = hello.generation, "paired with a primary");
        let link = BackupLink::start(link, frames, replies, config, door)?;
        Ok((link, hello))
    }
}

/// A listening socket on `addr`, as std's `TcpListener::bind` makes it but
/// with a longer queue.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The listener's thread. Dropping it stops the thread.
#[derive(Debug)]
pub(super) struct Door {
    phase: SharedPhase,
    refusals: Arc<Refusals>,
    /// Where a connection wakes the thread from accept(2).
    wake: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Door {
    fn open(
        listener: TcpListener,
        addr: SocketAddr,
        key: AuthKey,
        offers: Sender<Candidate>,
    ) -> io::Result<Self> {
        let phase = Arc::new(Mutex::new(Phase::Waiting));
        let refusals = Arc::new(Refusals::default());
        let span = tracing::info_span!("log listener", %addr);
        let thread = thread::Builder::new()
            .name("ftvm-log-listen".into())
            .spawn({
                let (phase, refusals) = (phase.clone(), refusals.clone());
                move || span.in_scope(|| keep(&listener, &key, &phase, &refusals, &offers))
            })?;
        Ok(Self {
            phase,
            refusals,
            wake: loopback(addr),
            thread: Some(thread),
        })
    }

    /// Pairs, then runs `drain` before any other candidate can be offered.
    fn pair(&self, drain: impl FnOnce()) {
        let mut phase = phase(&self.phase);
        *phase = Phase::Paired;
        drain();
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        *phase(&self.phase) = Phase::Closed;
        let Some(thread) = self.thread.take() else {
            return;
        };
        match TcpStream::connect_timeout(&self.wake, Duration::from_secs(1)) {
            Ok(_) => {
                if thread.join().is_err() {
                    tracing::error!("the log listener thread panicked");
                }
            }
            // Left to end with the process rather than waited for forever.
            Err(error) => tracing::warn!(%error, "cannot wake the log listener to stop it"),
        }
    }
}

/// The address of our own listener, reachable from this host.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Accepts connections until the door closes: each gets a handshake slot
/// while the backup waits, and is closed at once after it paired.
fn keep(
    listener: &TcpListener,
    key: &AuthKey,
    shared: &SharedPhase,
    refusals: &Arc<Refusals>,
    offers: &Sender<Candidate>,
) {
    let admission = Admission::new(HANDSHAKE_SLOTS);
    for incoming in listener.incoming() {
        let now = *phase(shared);
        if now == Phase::Closed {
            return;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot accept a connection");
                thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue; // Gone already.
        };
        if let Some(reason) = now.refusal() {
            refusals.refused(peer, &reason);
            continue;
        }
        let slot = match admission.admit(&stream, peer) {
            Ok((slot, displaced)) => {
                if let Some(displaced) = displaced {
                    tracing::debug!(peer = %displaced, "displaced by a newer connection");
                }
                slot
            }
            Err(error) => {
                refusals.refused(peer, &format_args!("cannot start its handshake: {error}"));
                continue;
            }
        };
        let span = tracing::Span::current();
        let spawned = thread::Builder::new().name("ftvm-log-greet".into()).spawn({
            let (key, shared, offers, refusals) = (
                key.clone(),
                shared.clone(),
                offers.clone(),
                refusals.clone(),
            );
            move || {
                span.in_scope(|| match greet(stream, peer, &key, &slot) {
                    Ok(candidate) => {
                        let now = phase(&shared);
                        match now.refusal() {
                            Some(reason) => candidate.turn_away(reason, &refusals),
                            None => {
                                if let Err(unwanted) = offers.send(candidate) {
                                    unwanted.into_inner().turn_away(CLOSED, &refusals);
                                }
                            }
                        }
                    }
                    Err(_) if slot.displaced() => refusals.refused(peer, &DISPLACED),
                    Err(problem) => {
                        refusals.refused(peer, &format_args!("handshake failed: {problem}"));
                    }
                });
            }
        });
        if let Err(error) = spawned {
            refusals.refused(peer, &format_args!("cannot start its handshake: {error}"));
        }
    }
}

/// A primary that has authenticated and sent its header.
struct Candidate {
    peer: SocketAddr,
    hello: PrimaryHello,
    link: Arc<LinkState>,
    frames: FrameReader<ToBackup>,
    replies: FrameWriter,
}

impl Candidate {
    fn refuse(mut self, reason: &str) {
        let refusal = ToPrimary::Refuse {
            reason: reason.into(),
        };
        if let Err(error) = self
            .replies
            .send(&refusal)
            .and_then(|()| self.replies.flush())
        {
            tracing::debug!(peer = %self.peer, %error, "cannot send the refusal");
        }
    }

    /// Refuses a primary that authenticated too late.
    fn turn_away(self, reason: &str, refusals: &Refusals) {
        refusals.refused(self.peer, &reason);
        self.refuse(reason);
    }
}

/// Authenticates a connection, which then gives up its `slot`, and reads
/// the primary's header.
fn greet(
    stream: TcpStream,
    peer: SocketAddr,
    key: &AuthKey,
    slot: &Slot,
) -> Result<Candidate, HandshakeError> {
    stream.set_nodelay(true)?;
    let session = handshake::as_backup(&stream, key, &|| slot.greeted())?;
    slot.authenticated();
    let link = LinkState::new("primary", stream.try_clone()?);
    let mut frames = FrameReader::new(stream.try_clone()?, session.to_backup, link.clone());
    let mut replies = FrameWriter::new(stream, session.to_primary);
    frames.set_timeout(HANDSHAKE_TIMEOUT)?;
    replies.set_timeout(HANDSHAKE_TIMEOUT)?;
    let (generation, header) = match frames.read().map_err(HandshakeError::Frame)? {
        ToBackup::Header { generation, header } => (generation, header),
        other => {
            let kind = other.name();
            return Err(HandshakeError::Frame(FrameError::Unexpected { kind }));
        }
    };
    let malformed = |problem: String| {
        HandshakeError::Frame(FrameError::Malformed {
            kind: "header",
            problem,
        })
    };
    let header = match decode_header(&header) {
        Ok(Some((decoded, len))) if len == header.len() => decoded,
        Ok(Some((_, len))) => {
            return Err(malformed(format!(
                "{} bytes follow the header",
                header.len() - len
            )));
        }
        Ok(None) => return Err(malformed("the header is cut short".into())),
        Err(error) => return Err(malformed(error.to_string())),
    };
    Ok(Candidate {
        peer,
        hello: PrimaryHello { header, generation },
        link,
        frames,
        replies,
    })
}
