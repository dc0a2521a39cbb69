//! What the channel tests share: keys, configs, pairs, and captured logs.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hmac::Mac as _;

use crate::channel::frame::{MAC_LEN, Mac};
use crate::channel::{
    AuthKey, BackupLink, BackupListener, ChannelConfig, ChannelError, FromBackup, FromPrimary,
    Lost, PrimaryHello, PrimaryLink, Released, connect,
};
use crate::{CpuidLeaf, Encoder, Event, Header, Record, StateDigest, Stream, StreamDigest};

/// The longest a test waits for something that should come.
pub(super) const PATIENCE: Duration = Duration::from_secs(20);
/// What a loaded two-core machine may add to a deadline.
pub(super) const SLACK: Duration = Duration::from_secs(1);

pub(super) fn key() -> AuthKey {
    AuthKey::from_bytes(*b"a pre-shared key for the tests").unwrap()
}

pub(super) fn other_key() -> AuthKey {
    AuthKey::from_bytes(*b"another key, which nobody shares").unwrap()
}

/// A timeout long enough that a busy machine causes no false loss.
pub(super) fn config() -> ChannelConfig {
    ChannelConfig {
        key: key(),
        heartbeat: Duration::from_millis(50),
        timeout: Duration::from_secs(3),
    }
}

/// For measuring loss detection: short enough to measure, yet long enough
/// (unlike the defaults' 300 ms) that a stalled thread on a loaded machine
/// is not taken for a loss before the test makes one.
pub(super) fn tight_config() -> ChannelConfig {
    ChannelConfig {
        key: key(),
        heartbeat: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
    }
}

pub(super) fn hello() -> PrimaryHello {
    PrimaryHello {
        header: Header {
            platform: "ftvm test platform".into(),
            mem_mib: 16,
            cmdline: "console=ttyS0".into(),
            kernel_name: "tiny".into(),
            kernel: (0..5000).map(|i| i as u8).collect(),
            kernel_sha256: [7; 32],
            cpuid: vec![CpuidLeaf {
                function: 1,
                eax: 0x806f8,
                ..CpuidLeaf::default()
            }],
            digest_interval: 1000,
            disk: None,
            net: None,
        },
        generation: 4,
    }
}

pub(super) fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub(super) type Accepted = Result<(BackupLink, PrimaryHello), ChannelError>;

/// A backup accepting every header, on a thread, for at most `PATIENCE`.
pub(super) fn listen(config: ChannelConfig) -> (SocketAddr, JoinHandle<Accepted>) {
    listen_checking(config, |_| Ok(()))
}

pub(super) fn listen_checking(
    config: ChannelConfig,
    check: impl Fn(&PrimaryHello) -> Result<(), String> + Send + 'static,
) -> (SocketAddr, JoinHandle<Accepted>) {
    let listener = BackupListener::bind(localhost()).unwrap();
    let addr = listener.local_addr();
    let deadline = Instant::now() + PATIENCE;
    let accepting =
        thread::spawn(move || listener.accept(&config, &check, &|| Instant::now() > deadline));
    (addr, accepting)
}

/// A primary paired with a backup; the primary connects to what `front`
/// makes of the backup's address (a proxy's, say).
pub(super) fn pair_through(
    config: &ChannelConfig,
    front: impl FnOnce(SocketAddr) -> SocketAddr,
) -> (PrimaryLink, BackupLink) {
    let (addr, accepting) = listen(config.clone());
    let primary = connect(front(addr), config, &hello()).unwrap();
    let (backup, received) = accepting.join().unwrap().unwrap();
    assert_eq!(received, hello());
    (primary, backup)
}

pub(super) fn pair(config: &ChannelConfig) -> (PrimaryLink, BackupLink) {
    pair_through(config, |addr| addr)
}

pub(super) fn recv<T>(from: &Receiver<T>) -> T {
    from.recv_timeout(PATIENCE)
        .expect("nothing arrived in time")
}

/// Receives until `pick` takes a message, for at most `PATIENCE` in all:
/// heartbeats alone must not keep a test waiting forever.
pub(super) fn recv_until<T, R>(from: &Receiver<T>, mut pick: impl FnMut(T) -> Option<R>) -> R {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let message = from
            .recv_deadline(deadline)
            .expect("what was awaited did not arrive in time");
        if let Some(picked) = pick(message) {
            return picked;
        }
    }
}

/// Skips to the loss report; returns it and when it came.
pub(super) fn backup_loses(backup: &BackupLink) -> (Lost, Instant) {
    recv_until(&backup.from_primary(), |message| match message {
        FromPrimary::Lost(lost) => Some((lost, Instant::now())),
        _ => None,
    })
}

pub(super) fn primary_loses(primary: &PrimaryLink) -> (Lost, Instant) {
    recv_until(&primary.from_backup(), |message| match message {
        FromBackup::Lost(lost) => Some((lost, Instant::now())),
        _ => None,
    })
}

/// The records of the next batch, skipping heartbeats.
/// Release counts that differ between the streams, so that a mix-up shows.
pub(super) fn progress(console: u64) -> Released {
    Released {
        console,
        frames: console * 3 + 1,
    }
}

pub(super) fn next_batch(from: &Receiver<FromPrimary>) -> (Vec<Record>, u64, Released) {
    recv_until(from, |message| match message {
        FromPrimary::Batch {
            records,
            through_exit,
            released,
            ..
        } => Some((records, through_exit, released)),
        FromPrimary::Heartbeat { .. } => None,
        other => panic!("{other:?}"),
    })
}

/// Records of every kind, with exits that grow by 1 to 3.
pub(super) fn records(count: usize) -> Vec<Record> {
    let mut exit = 0;
    (0..count as u64)
        .map(|i| {
            exit += 1 + i % 3;
            match i % 4 {
                0 => Record::Event {
                    exit,
                    signature: i as u32,
                    event: Event::Time { ns: i * 1_000 },
                },
                1 => Record::Event {
                    exit,
                    signature: !(i as u32),
                    event: Event::SerialIn(vec![i as u8; (i % 40) as usize]),
                },
                2 => Record::Output {
                    exit,
                    stream: Stream::Console,
                    digest: StreamDigest {
                        bytes: i,
                        digest: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    },
                },
                _ => Record::State {
                    exit,
                    digest: StateDigest {
                        registers: i,
                        memory: !i,
                    },
                },
            }
        })
        .collect()
}

/// Encodes `records` as batches of `per_batch`: (bytes, through exit).
pub(super) fn batches(records: &[Record], per_batch: usize) -> Vec<(Vec<u8>, u64)> {
    let mut encoder = Encoder::new();
    records
        .chunks(per_batch)
        .map(|chunk| {
            let mut bytes = Vec::new();
            for record in chunk {
                encoder.encode(record, &mut bytes);
            }
            (bytes, chunk.last().unwrap().exit())
        })
        .collect()
}

/// A frame as the protocol describes it, with a MAC under `mac`.
pub(super) fn raw_frame(mac: &Mac, kind: u8, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let length = (1 + 8 + payload.len() + MAC_LEN) as u32;
    let mut tag = mac.clone();
    tag.update(&sequence.to_le_bytes());
    tag.update(&[kind]);
    tag.update(payload);
    let mut frame = length.to_le_bytes().to_vec();
    frame.push(kind);
    frame.extend_from_slice(&sequence.to_le_bytes());
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&tag.finalize().into_bytes());
    frame
}

/// Two ends of a TCP connection.
pub(super) fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (far, _) = listener.accept().unwrap();
    (near, far)
}

/// Bytes that look like nothing in particular (xorshift).
pub(super) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Timing tests run one at a time, so they do not load each other.
pub(super) fn timing() -> MutexGuard<'static, ()> {
    static TIMING: Mutex<()> = Mutex::new(());
    TIMING.lock().unwrap_or_else(PoisonError::into_inner)
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every thread's logs to a buffer the tests can search.
pub(super) fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

/// The warnings that mention every one of `needles`.
pub(super) fn warnings(needles: &[&str]) -> Vec<String> {
    let logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains(" WARN ") && needles.iter().all(|n| line.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Waits for exactly one warning that mentions all of `needles`.
pub(super) fn one_warning(needles: &[&str]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut found = warnings(needles);
        if !found.is_empty() {
            // Give a duplicate the chance to show up.
            thread::sleep(Duration::from_millis(100));
            found = warnings(needles);
            assert_eq!(found.len(), 1, "{found:#?}");
            return found.remove(0);
        }
        assert!(Instant::now() < deadline, "no warning mentions {needles:?}");
        thread::sleep(Duration::from_millis(10));
    }
}
