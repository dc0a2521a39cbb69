//! The backup's listener: it waits for a primary that authenticates and
//! then, while the pair lasts, turns every other connection away.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

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
/// Handshakes that may run at once; a connection beyond them is refused.
const MAX_HANDSHAKES: usize = 8;
/// The pause after a failed accept(2), which may fail again at once (for
/// instance out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Where the backup is: what happens to a connection depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Paired,
    Closed,
}

const PAIRED: &str = "this backup is already paired";
const CLOSED: &str = "this backup no longer waits for a primary";
const BUSY: &str = "too many handshakes at once";

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
        let bound = TcpListener::bind(addr).and_then(|listener| {
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
    /// refused with one warning and the wait goes on; handshakes run on
    /// threads of their own, so one slow peer holds no other up.
    ///
    /// `check` decides on the primary's header: an `Err(reason)` refuses it
    /// and ends the wait with [`ChannelError::Mismatch`]. `give_up` is asked
    /// every 100 ms and ends the wait with [`ChannelError::GaveUp`].
    ///
    /// After pairing, the listener goes on, on its own thread, refusing any
    /// other connection (one warning each) until the link is dropped.
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
                late.turn_away(PAIRED);
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

/// The listener's thread. Dropping it stops the thread.
#[derive(Debug)]
pub(super) struct Door {
    phase: SharedPhase,
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
        let span = tracing::info_span!("log listener", %addr);
        let thread = thread::Builder::new()
            .name("ftvm-log-listen".into())
            .spawn({
                let phase = phase.clone();
                move || span.in_scope(|| keep(&listener, &key, &phase, &offers))
            })?;
        Ok(Self {
            phase,
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

/// Accepts connections until the door closes: each gets a handshake while
/// the backup waits, and a refusal once it is paired.
fn keep(listener: &TcpListener, key: &AuthKey, shared: &SharedPhase, offers: &Sender<Candidate>) {
    let handshakes = Arc::new(AtomicUsize::new(0));
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
        let busy = handshakes.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES;
        let refusal = now.refusal().or(busy.then_some(BUSY));
        if let Some(reason) = refusal {
            handshakes.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%peer, reason, "refused a connection");
            continue;
        }
        let span = tracing::Span::current();
        let spawned = thread::Builder::new().name("ftvm-log-greet".into()).spawn({
            let (key, shared, offers, handshakes) = (
                key.clone(),
                shared.clone(),
                offers.clone(),
                handshakes.clone(),
            );
            move || {
                span.in_scope(|| match greet(stream, peer, &key) {
                    Ok(candidate) => {
                        let now = phase(&shared);
                        match now.refusal() {
                            Some(reason) => candidate.turn_away(reason),
                            None => {
                                if let Err(unwanted) = offers.send(candidate) {
                                    unwanted.into_inner().turn_away(CLOSED);
                                }
                            }
                        }
                    }
                    Err(problem) => {
                        tracing::warn!(%peer, %problem, "refused a connection: handshake failed");
                    }
                });
                handshakes.fetch_sub(1, Ordering::SeqCst);
            }
        });
        if let Err(error) = spawned {
            handshakes.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%peer, %error, "refused a connection: cannot start its handshake");
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
    fn turn_away(self, reason: &str) {
        tracing::warn!(peer = %self.peer, reason, "refused a connection");
        self.refuse(reason);
    }
}

/// Authenticates a connection and reads the primary's header.
fn greet(stream: TcpStream, peer: SocketAddr, key: &AuthKey) -> Result<Candidate, HandshakeError> {
    stream.set_nodelay(true)?;
    let session = handshake::as_backup(&stream, key)?;
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
