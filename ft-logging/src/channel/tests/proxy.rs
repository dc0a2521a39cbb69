//! A TCP proxy between a primary and its backup that knows where messages
//! begin and end, so it can alter, drop, repeat or withhold them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::support::{localhost, pair_through};
use crate::channel::handshake::{HELLO_LEN, PROOF_LEN};
use crate::channel::{BackupLink, ChannelConfig, PrimaryLink};

/// A message on its way: a handshake part, or frame `n` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Hello,
    Proof,
    Frame(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Forward,
    Drop,
    /// Forward it, then the same bytes again.
    Twice,
    /// Forward its first half, then close both connections.
    HalfThenCut,
}

pub(super) type Filter = Box<dyn FnMut(Unit, &mut Vec<u8>) -> Verdict + Send>;

pub(super) fn forward() -> Filter {
    Box::new(|_, _| Verdict::Forward)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    ToBackup,
    ToPrimary,
}

#[derive(Debug, Default)]
struct Shared {
    /// Per direction: withholding everything, as a frozen sender would.
    frozen: [AtomicBool; 2],
    /// Per direction: when the last bytes were handed to the receiver.
    last_forward: Mutex<[Option<Instant>; 2]>,
    streams: Mutex<Vec<TcpStream>>,
}

#[derive(Debug)]
pub(super) struct Proxy {
    pub(super) addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Relays the first connection it gets to `target`, passing each
    /// direction's messages through its filter.
    pub(super) fn start(target: SocketAddr, to_backup: Filter, to_primary: Filter) -> Self {
        let listener = TcpListener::bind(localhost()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        thread::spawn({
            let shared = shared.clone();
            move || {
                let (primary, _) = listener.accept().unwrap();
                let backup = TcpStream::connect(target).unwrap();
                for stream in [&primary, &backup] {
                    stream.set_nodelay(true).unwrap();
                    shared
                        .streams
                        .lock()
                        .unwrap()
                        .push(stream.try_clone().unwrap());
                }
                let (primary2, backup2) =
                    (primary.try_clone().unwrap(), backup.try_clone().unwrap());
                let upstream = shared.clone();
                thread::spawn(move || {
                    pump(primary2, backup2, to_backup, &upstream, Direction::ToBackup)
                });
                pump(backup, primary, to_primary, &shared, Direction::ToPrimary);
            }
        });
        Self { addr, shared }
    }

    /// Stops forwarding in one direction; what arrives is thrown away.
    pub(super) fn freeze(&self, direction: Direction) {
        self.shared.frozen[direction as usize].store(true, Ordering::SeqCst);
    }

    /// Closes both connections.
    pub(super) fn cut(&self) {
        for stream in self.shared.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// When bytes last went out in `direction`.
    pub(super) fn last_forward(&self, direction: Direction) -> Instant {
        self.shared.last_forward.lock().unwrap()[direction as usize].unwrap()
    }
}

/// A pair talking through a proxy with these filters.
pub(super) fn proxied_pair(
    config: &ChannelConfig,
    to_backup: Filter,
    to_primary: Filter,
) -> (PrimaryLink, BackupLink, Proxy) {
    let mut proxy = None;
    let (primary, backup) = pair_through(config, |addr| {
        let started = Proxy::start(addr, to_backup, to_primary);
        let front = started.addr;
        proxy = Some(started);
        front
    });
    (primary, backup, proxy.unwrap())
}

fn pump(from: TcpStream, to: TcpStream, mut filter: Filter, shared: &Shared, direction: Direction) {
    let frozen = || shared.frozen[direction as usize].load(Ordering::SeqCst);
    let relay = |unit: Unit, mut bytes: Vec<u8>, filter: &mut Filter| -> bool {
        if frozen() {
            return true;
        }
        let send = |bytes: &[u8]| {
            shared.last_forward.lock().unwrap()[direction as usize] = Some(Instant::now());
            (&to).write_all(bytes).is_ok()
        };
        match filter(unit, &mut bytes) {
            Verdict::Forward => send(&bytes),
            Verdict::Drop => true,
            Verdict::Twice => send(&bytes) && send(&bytes),
            Verdict::HalfThenCut => {
                send(&bytes[..bytes.len() / 2]);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                false
            }
        }
    };
    // Reads go through `&from`, so `relay` may shut `from` down meanwhile.
    let read = |len: usize| {
        let mut bytes = vec![0; len];
        (&from).read_exact(&mut bytes).ok().map(|()| bytes)
    };
    let mut units = vec![(Unit::Hello, HELLO_LEN), (Unit::Proof, PROOF_LEN)].into_iter();
    let mut frame = 0;
    loop {
        let message = match units.next() {
            Some((unit, len)) => read(len).map(|bytes| (unit, bytes)),
            None => read(4).and_then(|mut bytes| {
                let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
                bytes.extend(read(len)?);
                frame += 1;
                Some((Unit::Frame(frame - 1), bytes))
            }),
        };
        let Some((unit, bytes)) = message else {
            // A frozen sender would not close either.
            if !frozen() {
                let _ = to.shutdown(Shutdown::Write);
            }
            return;
        };
        if !relay(unit, bytes, &mut filter) {
            return;
        }
    }
}
