//! Authentication: only a peer that knows the key pairs, and nothing a
//! stranger can copy (a proof reflected back, a recorded handshake) stands
//! in for knowing it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use hmac::Mac as _;

use super::proxy::{Filter, Unit, Verdict, proxied_pair};
use super::support::{
    Accepted, PATIENCE, capture_logs, config, hello, key, listen, localhost, noise, one_warning,
    other_key, raw_frame,
};
use crate::channel::handshake::{HELLO_LEN, PROOF_LEN, REJECTED, ROLE_AT};
use crate::channel::{AuthKey, ChannelConfig, ChannelError, HandshakeError, connect};

const PRIMARY: u8 = 1;
const BACKUP: u8 = 2;
const PROOF: u8 = 0x50;

fn with_key(key: AuthKey) -> ChannelConfig {
    ChannelConfig { key, ..config() }
}

/// The proof `role` gives, as the protocol defines it.
fn proof(key: &AuthKey, role: u8, own_nonce: &[u8], peer_nonce: &[u8]) -> Vec<u8> {
    let mut mac = key.mac();
    mac.update(b"ftvm-auth");
    mac.update(&[role]);
    mac.update(own_nonce);
    mac.update(peer_nonce);
    let mut message = vec![PROOF];
    message.extend_from_slice(&mac.finalize().into_bytes());
    message
}

fn nonce(hello: &[u8]) -> &[u8] {
    &hello[ROLE_AT + 1..]
}

fn read(stream: &TcpStream, len: usize) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = vec![0; len];
    (&*stream).read_exact(&mut bytes).unwrap();
    bytes
}

/// A backup impostor: it takes one connection and does what `act` does.
/// Answers the primary's hello as a backup with a nonce from `seed`;
/// returns (our nonce, the primary's).
fn hello_as_backup(stream: &TcpStream, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let ours = noise(32, seed);
    let mut hello = read(stream, HELLO_LEN);
    let theirs = nonce(&hello).to_vec();
    hello[ROLE_AT] = BACKUP;
    hello[ROLE_AT + 1..].copy_from_slice(&ours);
    (&*stream).write_all(&hello).unwrap();
    (ours, theirs)
}

/// A real primary finds that the impostor at `addr` does not know the key.
fn primary_fails_authentication(addr: SocketAddr, acting: JoinHandle<()>) {
    let problem = primary_refuses(addr, &config());
    assert!(
        matches!(problem, HandshakeError::Authentication),
        "{problem}"
    );
    acting.join().unwrap();
}

fn impostor(act: impl FnOnce(&TcpStream) + Send + 'static) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    let acting = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        act(&stream);
        // Held open until the primary has judged what it got.
        let _ = (&stream).read_to_end(&mut Vec::new());
    });
    (addr, acting)
}

/// The primary's error, checked to be one line about authentication.
fn primary_refuses(addr: SocketAddr, config: &ChannelConfig) -> HandshakeError {
    let error = connect(addr, config, &hello()).unwrap_err();
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message:?}");
    assert!(message.contains("authentication failed"), "{message}");
    match error {
        ChannelError::Handshake { problem, .. } => problem,
        other => panic!("{other:?}"),
    }
}

/// The backup's listener at `addr` refused one connection for a failed
/// authentication, in one line of warning; it still pairs with a primary
/// that knows its key.
fn backup_refused(addr: SocketAddr, accepting: JoinHandle<Accepted>, its_key: AuthKey) {
    let warning = one_warning(&[&format!("addr={addr}}}"), "authentication failed"]);
    assert!(warning.contains("refused a connection"), "{warning}");
    assert!(!warning.contains('\n'));
    let config = with_key(its_key);
    let primary = connect(addr, &config, &hello()).unwrap();
    let (backup, _) = accepting.join().unwrap().unwrap();
    drop((primary, backup));
}

#[test]
fn a_backup_built_by_hand_from_the_protocol_is_accepted() {
    // The control for the tests below: their proofs follow the protocol as
    // documented, which is what the channel implements.
    let (addr, acting) = impostor(|stream| {
        let (ours, theirs) = hello_as_backup(stream, 5);
        let mut stream = stream;
        assert_eq!(
            read(stream, PROOF_LEN),
            proof(&key(), PRIMARY, &theirs, &ours)
        );
        stream
            .write_all(&proof(&key(), BACKUP, &ours, &theirs))
            .unwrap();
        // The session key for frames to the primary, and a refusal in one.
        let mut session = key().mac();
        session.update(b"ftvm-session");
        session.update(&[BACKUP]);
        session.update(&theirs);
        session.update(&ours);
        let session = crate::channel::frame::Mac::new_from_slice(&session.finalize().into_bytes());
        let refusal = raw_frame(&session.unwrap(), 0x82, 0, b"made by hand");
        stream.write_all(&refusal).unwrap();
    });
    match connect(addr, &config(), &hello()) {
        Err(ChannelError::Refused(reason)) => assert_eq!(reason, "made by hand"),
        other => panic!("{other:?}"),
    }
    acting.join().unwrap();
}

#[test]
fn a_primary_with_the_wrong_key_is_refused_on_both_sides() {
    capture_logs();
    let (addr, accepting) = listen(config());
    let problem = primary_refuses(addr, &with_key(other_key()));
    assert!(matches!(problem, HandshakeError::Rejected), "{problem}");
    backup_refused(addr, accepting, key());
}

#[test]
fn a_backup_with_the_wrong_key_is_refused_on_both_sides() {
    capture_logs();
    let (addr, accepting) = listen(with_key(other_key()));
    let problem = primary_refuses(addr, &config());
    assert!(matches!(problem, HandshakeError::Rejected), "{problem}");
    backup_refused(addr, accepting, other_key());
}

#[test]
fn a_backup_that_proves_with_another_key_is_refused() {
    // Unlike a real backup, this one does not check the primary first.
    let (addr, acting) = impostor(|stream| {
        let (ours, theirs) = hello_as_backup(stream, 1);
        let mut stream = stream;
        read(stream, PROOF_LEN);
        stream
            .write_all(&proof(&other_key(), BACKUP, &ours, &theirs))
            .unwrap();
    });
    primary_fails_authentication(addr, acting);
}

#[test]
fn a_primary_does_not_accept_its_own_proof_reflected() {
    // The impostor echoes the primary's hello as a backup's, nonce and
    // all, then its proof: were proofs not bound to a role, it would hold.
    let (addr, acting) = impostor(|stream| {
        let mut hello = read(stream, HELLO_LEN);
        hello[ROLE_AT] = BACKUP;
        let mut stream = stream;
        stream.write_all(&hello).unwrap();
        let proof = read(stream, PROOF_LEN);
        stream.write_all(&proof).unwrap();
    });
    primary_fails_authentication(addr, acting);
}

#[test]
fn a_backup_does_not_accept_its_own_hello_or_proof_reflected() {
    capture_logs();
    let (addr, accepting) = listen(config());
    // Its hello, echoed as is: the role gives it away.
    let echo = TcpStream::connect(addr).unwrap();
    let hello = read(&echo, HELLO_LEN);
    (&echo).write_all(&hello).unwrap();
    let peer = format!("peer={} ", echo.local_addr().unwrap());
    one_warning(&[&peer, "role is backup, expected primary"]);

    // Its hello as a primary's, with the proof the backup itself would give
    // for this exchange (made here with the key, as the backup would).
    let reflect = TcpStream::connect(addr).unwrap();
    let mut hello = read(&reflect, HELLO_LEN);
    let nb = nonce(&hello).to_vec();
    hello[ROLE_AT] = PRIMARY;
    (&reflect).write_all(&hello).unwrap();
    (&reflect)
        .write_all(&proof(&key(), BACKUP, &nb, &nb))
        .unwrap();
    assert_eq!(read(&reflect, 1), [REJECTED]);
    backup_refused(addr, accepting, key());
}

/// What a pair said during its handshake, per direction: hello, proof and
/// the first frame.
fn record_a_handshake() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let recorder = |log: &Arc<Mutex<Vec<Vec<u8>>>>| -> Filter {
        let log = log.clone();
        Box::new(move |unit: Unit, bytes: &mut Vec<u8>| {
            if matches!(unit, Unit::Hello | Unit::Proof | Unit::Frame(0)) {
                log.lock().unwrap().push(bytes.clone());
            }
            Verdict::Forward
        })
    };
    let (from_primary, from_backup) = (Arc::default(), Arc::default());
    let (primary, backup, _proxy) =
        proxied_pair(&config(), recorder(&from_primary), recorder(&from_backup));
    drop((primary, backup));
    let take = |log: Arc<Mutex<Vec<Vec<u8>>>>| std::mem::take(&mut *log.lock().unwrap());
    (take(from_primary), take(from_backup))
}

#[test]
fn a_replayed_primary_handshake_does_not_authenticate() {
    capture_logs();
    let (recorded, backup_said) = record_a_handshake();
    assert_eq!(recorded.len(), 3);
    let (addr, accepting) = listen(config());
    let replay = TcpStream::connect(addr).unwrap();
    (&replay).write_all(&recorded[0]).unwrap();
    let hello = read(&replay, HELLO_LEN);
    // A fresh nonce, so the recorded proof covers another exchange.
    assert_ne!(nonce(&hello), nonce(&backup_said[0]));
    (&replay).write_all(&recorded[1]).unwrap();
    (&replay).write_all(&recorded[2]).unwrap();
    assert_eq!(read(&replay, 1), [REJECTED]);
    backup_refused(addr, accepting, key());
}

#[test]
fn a_replayed_backup_handshake_does_not_authenticate() {
    let (primary_said, recorded) = record_a_handshake();
    assert_eq!(recorded.len(), 3);
    let (addr, acting) = impostor(move |stream| {
        let mut stream = stream;
        stream.write_all(&recorded[0]).unwrap();
        let hello = read(stream, HELLO_LEN);
        assert_ne!(nonce(&hello), nonce(&primary_said[0]));
        read(stream, PROOF_LEN);
        stream.write_all(&recorded[1]).unwrap();
        stream.write_all(&recorded[2]).unwrap();
    });
    primary_fails_authentication(addr, acting);
}
