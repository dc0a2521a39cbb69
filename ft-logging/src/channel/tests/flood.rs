//! Strangers flooding the backup's port cannot keep a primary out, and a
//! primary waits for a backup that does not answer yet, but not for one
//! that answers no.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::support::{
    PATIENCE, batches, config, hello, listen, next_batch, noise, other_key, progress, records,
    timing,
};
use crate::channel::{ChannelConfig, ChannelError, HandshakeError, dial};

/// A connection to `addr`; the `i`th of a flood sends 64 random bytes when
/// `i` is a multiple of 3, and nothing otherwise.
fn stranger(addr: SocketAddr, i: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    if i.is_multiple_of(3) {
        let _ = stream.write_all(&noise(64, i as u64 + 1));
    }
    stream
}

/// `count` connections held open against `addr`.
fn flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count).map(|i| stranger(addr, i)).collect()
}

/// `count` connections kept open against `addr`: each one the backup
/// closes is opened again at once, until dropped.
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Churn {
    fn start(addr: SocketAddr, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut held = flood(addr, count);
        let thread = thread::spawn({
            let stop = stop.clone();
            move || {
                let mut reopened = 0;
                while !stop.load(Ordering::Relaxed) {
                    for (i, stream) in held.iter_mut().enumerate() {
                        stream.set_nonblocking(true).unwrap();
                        let closed = match stream.peek(&mut [0]) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(error) => error.kind() != ErrorKind::WouldBlock,
                        };
                        if closed {
                            *stream = stranger(addr, i);
                            reopened += 1;
                        }
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                reopened
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops, and says how many connections were opened again.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// How long a primary waits for its backup in these tests: less than the
/// whole handshake's deadline, so strangers that could hold a slot for it
/// would make the primary miss its backup.
const WAIT: Duration = Duration::from_secs(3);

#[test]
fn a_primary_pairs_through_a_flood_of_idle_and_garbage_connections() {
    let _one = timing();
    let (addr, accepting) = listen(config());
    let held = flood(addr, 300);
    let primary = dial(addr, &config(), &hello(), WAIT, &|| false)
        .unwrap()
        .expect("the backup answered");
    let (backup, received) = accepting.join().unwrap().unwrap();
    assert_eq!(received, hello());
    // More of them while the pair runs do not disturb it.
    let more = flood(addr, 300);
    let sent = records(50);
    let (bytes, through_exit) = batches(&sent, 50).remove(0);
    primary.sender().batch(bytes, through_exit, progress(0));
    assert_eq!(next_batch(&backup.from_primary()).0, sent);
    drop((held, more));
}

#[test]
fn a_primary_pairs_while_strangers_keep_300_connections_open() {
    let _one = timing();
    let (addr, accepting) = listen(config());
    let churn = Churn::start(addr, 300);
    let primary = dial(addr, &config(), &hello(), WAIT, &|| false)
        .unwrap()
        .expect("the backup answered");
    let (backup, _) = accepting.join().unwrap().unwrap();
    let reopened = churn.stop();
    assert!(reopened > 0, "the backup closed none of them");
    drop((primary, backup));
}

#[test]
fn a_primary_waits_for_a_backup_that_starts_later() {
    // An address nobody listens on yet.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let later = thread::spawn(move || {
        thread::sleep(Duration::from_millis(700));
        let listener = crate::channel::BackupListener::bind(addr).unwrap();
        let deadline = Instant::now() + PATIENCE;
        listener.accept(&config(), &|_| Ok(()), &|| Instant::now() > deadline)
    });
    let primary = dial(addr, &config(), &hello(), PATIENCE, &|| false).unwrap();
    let (backup, _) = later.join().unwrap().unwrap();
    assert!(primary.is_some());
    drop(backup);
}

#[test]
fn a_silent_port_ends_the_wait_without_a_backup() {
    let _one = timing();
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let wait = Duration::from_millis(600);
    let started = Instant::now();
    let result = dial(addr, &config(), &hello(), wait, &|| false);
    let took = started.elapsed();
    assert!(matches!(result, Ok(None)), "{result:?}");
    assert!(took >= wait, "{took:?}");
    assert!(took < wait + Duration::from_secs(2), "{took:?}");
    drop(listener);
}

#[test]
fn giving_up_ends_the_wait_at_once() {
    let _one = timing();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let until = Instant::now() + Duration::from_millis(300);
    let result = dial(addr, &config(), &hello(), PATIENCE, &|| {
        Instant::now() > until
    });
    assert!(matches!(result, Err(ChannelError::GaveUp)), "{result:?}");
    assert!(until.elapsed() < Duration::from_secs(1));
    drop(listener);
}

#[test]
fn a_wrong_key_ends_the_wait_at_once() {
    let (addr, accepting) = listen(config());
    let wrong = ChannelConfig {
        key: other_key(),
        ..config()
    };
    let started = Instant::now();
    match dial(addr, &wrong, &hello(), PATIENCE, &|| false) {
        Err(ChannelError::Handshake {
            problem: HandshakeError::Rejected,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < PATIENCE / 2);
    // The backup refused it and still pairs with a primary that knows its key.
    let primary = dial(addr, &config(), &hello(), PATIENCE, &|| false).unwrap();
    let (backup, _) = accepting.join().unwrap().unwrap();
    drop((primary, backup));
}
