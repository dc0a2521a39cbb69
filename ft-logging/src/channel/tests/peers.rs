//! Peers that are not the primary the backup waits for: each is turned
//! away with one warning, and the backup still pairs with the real one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Instant;

use super::support::{
    Accepted, PATIENCE, batches, capture_logs, config, hello, listen, listen_checking, next_batch,
    noise, one_warning, progress, records, warnings,
};
use crate::channel::handshake::{HELLO_LEN, MAGIC, ROLE_AT, VERSION};
use crate::channel::{ChannelError, FromBackup, HELLO_TIMEOUT, connect};

/// A client that sends `bytes` to the backup at `addr`, and its address.
fn client(addr: SocketAddr, bytes: &[u8]) -> (TcpStream, String) {
    let stream = TcpStream::connect(addr).unwrap();
    (&stream).write_all(bytes).unwrap();
    // The warnings name the peer; the space keeps port 4000 from matching 40001.
    let peer = format!("peer={} ", stream.local_addr().unwrap());
    (stream, peer)
}

/// A hello from a primary, as `edit` changes it.
fn hello_bytes(edit: impl FnOnce(&mut [u8; HELLO_LEN])) -> [u8; HELLO_LEN] {
    let mut bytes = [0; HELLO_LEN];
    bytes[..8].copy_from_slice(&MAGIC);
    bytes[8..ROLE_AT].copy_from_slice(&VERSION.to_le_bytes());
    bytes[ROLE_AT] = 1;
    edit(&mut bytes);
    bytes
}

/// The backup refuses the client with one warning that says `why`, closes
/// its connection, and then pairs with a real primary.
fn refused_then_pairs(
    addr: SocketAddr,
    accepting: JoinHandle<Accepted>,
    client: TcpStream,
    peer: &str,
    why: &str,
) {
    let warning = one_warning(&[peer, "refused a connection", why]);
    assert!(warning.contains("handshake failed"), "{warning}");
    // The backup's hello may come first; then the connection ends.
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    let _ = (&client).read_to_end(&mut rest);
    assert!(
        rest.len() <= HELLO_LEN,
        "{} bytes after a refusal",
        rest.len()
    );
    let primary = connect(addr, &config(), &hello()).unwrap();
    let (backup, received) = accepting.join().unwrap().unwrap();
    assert_eq!(received, hello());
    drop((primary, backup));
}

fn refused(bytes: &[u8], why: &str) {
    capture_logs();
    let (addr, accepting) = listen(config());
    let (stream, peer) = client(addr, bytes);
    refused_then_pairs(addr, accepting, stream, &peer, why);
}

#[test]
fn garbage_is_refused() {
    refused(&noise(4 * HELLO_LEN, 11), "bad magic");
}

#[test]
fn a_wrong_magic_is_refused() {
    refused(&hello_bytes(|h| h[7] = b'2'), "bad magic");
}

#[test]
fn a_wrong_version_is_refused() {
    let wrong = (VERSION + 1).to_le_bytes();
    let why = format!("speaks protocol version {}", VERSION + 1);
    refused(
        &hello_bytes(|h| h[8..ROLE_AT].copy_from_slice(&wrong)),
        &why,
    );
}

#[test]
fn a_wrong_role_is_refused() {
    refused(
        &hello_bytes(|h| h[ROLE_AT] = 2),
        "role is backup, expected primary",
    );
    refused(&hello_bytes(|h| h[ROLE_AT] = 7), "role is unknown (0x07)");
}

#[test]
fn a_client_that_closes_mid_handshake_is_refused() {
    capture_logs();
    let (addr, accepting) = listen(config());
    // Half a hello, then the write side closes; the read side stays open.
    let (stream, peer) = client(addr, &hello_bytes(|_| ())[..HELLO_LEN / 2]);
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    refused_then_pairs(addr, accepting, stream, &peer, "closed the connection");
}

#[test]
fn a_silent_client_times_out_and_holds_nobody_up() {
    capture_logs();
    let (addr, accepting) = listen(config());
    let connected = Instant::now();
    let (silent, peer) = client(addr, &[]);
    // A real primary pairs while the silent one waits out its deadline.
    let primary = connect(addr, &config(), &hello()).unwrap();
    let (backup, _) = accepting.join().unwrap().unwrap();
    if connected.elapsed() < HELLO_TIMEOUT {
        assert!(warnings(&[&peer]).is_empty(), "refused before its deadline");
    }
    let warning = one_warning(&[&peer, "refused a connection", "timed out"]);
    assert!(connected.elapsed() >= HELLO_TIMEOUT, "{warning}");
    drop(silent);
    // The pair did not notice.
    let sent = records(5);
    let (bytes, through_exit) = batches(&sent, 5).remove(0);
    primary.sender().batch(bytes, through_exit, progress(0));
    assert_eq!(next_batch(&backup.from_primary()).0, sent);
}

#[test]
fn a_refused_header_is_refused_on_both_sides() {
    let (addr, accepting) = listen_checking(config(), |hello| {
        Err(format!("generation {} is not ours", hello.generation))
    });
    let reason = "generation 4 is not ours";
    match connect(addr, &config(), &hello()) {
        Err(ChannelError::Refused(theirs)) => assert_eq!(theirs, reason),
        other => panic!("{other:?}"),
    }
    match accepting.join().unwrap() {
        Err(ChannelError::Mismatch(ours)) => assert_eq!(ours, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn once_paired_the_listener_refuses_others_and_the_pair_goes_on() {
    capture_logs();
    let (addr, accepting) = listen(config());
    let primary = connect(addr, &config(), &hello()).unwrap();
    let (backup, _) = accepting.join().unwrap().unwrap();

    // A raw client is closed on without a word.
    let (late, peer) = client(addr, &[]);
    late.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = Vec::new();
    let _ = (&late).read_to_end(&mut bytes);
    assert!(bytes.is_empty());
    one_warning(&[&peer, "this backup is already paired"]);
    // So is a real primary.
    match connect(addr, &config(), &hello()) {
        Err(ChannelError::Handshake { .. }) => {}
        other => panic!("{other:?}"),
    }

    let sent = records(20);
    let (bytes, through_exit) = batches(&sent, 20).remove(0);
    primary.sender().batch(bytes, through_exit, progress(0));
    assert_eq!(next_batch(&backup.from_primary()).0, sent);
    let heard: Vec<_> = primary.from_backup().try_iter().collect();
    assert!(
        heard.iter().all(|m| !matches!(m, FromBackup::Lost(_))),
        "{heard:#?}"
    );
}
