//! Framing, inline requests and protocol errors.

use alloc::vec::Vec;
use std::string::String;
use std::{format, vec};

use super::{World, XorShift, multibulk, protocol_error, random_chunks, replies};
use crate::{MAX_INLINE, MAX_REQUEST};

#[test]
fn pipelined_requests_run_one_by_one() {
    let mut world = World::new();
    let mut input = b"SET a 1\r\nINCR a\n".to_vec();
    input.extend_from_slice(&multibulk(&[b"GET", b"a"]));
    input.extend_from_slice(b"PING\r\nGET a");
    assert_eq!(world.send(&input), "+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n");
    assert_eq!(world.send(b"\r\n"), "$1\r\n2\r\n");
}

#[test]
fn empty_requests_are_ignored() {
    assert_eq!(
        replies(b"\r\n\n   \t\r\n*0\r\n*-1\r\n*-10\r\nPING\r\n"),
        "+PONG\r\n"
    );
}

#[test]
fn inline_quotes() {
    let mut world = World::new();
    let input = b"SET \"a b\" 'c d'\r\nSET k \"\"\r\nSET x \"\\x41\\n\\\"\"\r\nECHO 'it\\'s'\r\n";
    assert_eq!(world.send(input), "+OK\r\n+OK\r\n+OK\r\n$4\r\nit's\r\n");
    assert_eq!(world.call(&[b"GET", b"a b"]), "$3\r\nc d\r\n");
    assert_eq!(world.call(&[b"GET", b"k"]), "$0\r\n\r\n");
    assert_eq!(world.call(&[b"GET", b"x"]), "$3\r\nA\n\"\r\n");
}

#[test]
fn multibulk_takes_the_two_bytes_after_data_unseen() {
    // As Redis does: the bytes after an argument are skipped, not checked.
    assert_eq!(
        replies(b"*2\r\n$4\r\nECHO\r\n$2\r\nhiXYPING\r\n"),
        "$2\r\nhi\r\n+PONG\r\n"
    );
    assert_eq!(replies(b"*1\rX$4\rXPINGxx"), "+PONG\r\n");
}

#[test]
fn partial_requests_wait() {
    let mut world = World::new();
    let request = multibulk(&[b"SET", b"key", b"value"]);
    for &byte in &request[..request.len() - 1] {
        assert_eq!(world.send(&[byte]), "");
    }
    assert_eq!(world.send(&request[request.len() - 1..]), "+OK\r\n");
    for &byte in b"GET key" {
        assert_eq!(world.send(&[byte]), "");
    }
    assert_eq!(world.send(b"\n"), "$5\r\nvalue\r\n");
}

/// Each protocol error is replied as Redis words it, and, as in Redis, the
/// connection closes: nothing after it is read.
fn assert_closes(input: &[u8], error: &str) {
    let mut world = World::new();
    let mut bytes = input.to_vec();
    bytes.extend_from_slice(b"\r\nPING\r\n");
    assert_eq!(
        world.send(&bytes),
        error,
        "{}",
        String::from_utf8_lossy(input)
    );
    assert!(world.client.is_closed());
    assert_eq!(world.send(b"PING\r\n"), "");
}

#[test]
fn invalid_multibulk_length() {
    for header in [
        &b"*x"[..],
        b"*",
        b"*1x",
        b"*+1",
        b"*01",
        b"* 1",
        b"*99999999999999999999",
    ] {
        assert_closes(header, &protocol_error("invalid multibulk length"));
    }
    // Too long to be a number: refused before its end arrives.
    assert_eq!(
        replies(b"*123456789012345678901"),
        protocol_error("invalid multibulk length")
    );
    // More arguments than could fit in a request.
    let count = MAX_REQUEST / 6;
    assert_closes(
        format!("*{count}\r\n").as_bytes(),
        &protocol_error("invalid multibulk length"),
    );
}

#[test]
fn invalid_bulk_length() {
    for header in [
        &b"$x"[..],
        b"$",
        b"$-1",
        b"$-5",
        b"$1x",
        b"$01",
        b"$99999999999999999999",
        b"$1048577000",
    ] {
        let mut input = b"*2\r\n$4\r\nECHO\r\n".to_vec();
        input.extend_from_slice(header);
        assert_closes(&input, &protocol_error("invalid bulk length"));
    }
    // Each argument fits; together they do not.
    let half = vec![b'h'; MAX_REQUEST / 2];
    let input = multibulk(&[b"DEL", &half, &half, b"a"]);
    assert_closes(&input, &protocol_error("invalid bulk length"));
}

#[test]
fn expected_dollar() {
    assert_closes(
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz",
        &protocol_error("expected '$', got 'f'"),
    );
    // CR and LF are shown as spaces.
    assert_closes(b"*1\r\n\r\n", &protocol_error("expected '$', got ' '"));
    assert_closes(b"*1\r\n\n", &protocol_error("expected '$', got ' '"));
    // A NUL ends Redis's C-string message early.
    assert_closes(b"*1\r\n\0", "-ERR Protocol error: expected '$', got '\r\n");
    assert_closes(
        b"*2\r\n$4\r\nECHO\r\n*1\r\n$4\r\nPING",
        &protocol_error("expected '$', got '*'"),
    );
}

#[test]
fn unbalanced_quotes() {
    for line in [&b"ECHO \"a"[..], b"ECHO 'a", b"ECHO \"a\"x", b"SET 'a'b c"] {
        assert_closes(line, &protocol_error("unbalanced quotes in request"));
    }
}

#[test]
fn an_oversized_inline_request_is_refused() {
    let line = [b"ECHO ".as_slice(), &vec![b'e'; MAX_INLINE - 5], b"\n"].concat();
    assert_eq!(replies(&line).len(), MAX_INLINE - 5 + 10);
    let line = [b"ECHO ".as_slice(), &vec![b'e'; MAX_INLINE + 100], b"\r\n"].concat();
    // Refused as soon as the limit passes without a newline.
    let mut world = World::new();
    let replies = world.send_chunks(&line.chunks(1000).collect::<Vec<_>>());
    assert_eq!(
        replies,
        [protocol_error("too big inline request").into_bytes()]
    );
    assert!(world.client.is_closed());
}

#[test]
fn an_argument_the_guest_has_no_memory_for_is_refused() {
    let mut world = World::new();
    world.host.memory.room = 1000;
    assert_eq!(world.call(&[b"SET", b"k", &[b'v'; 999]]), "+OK\r\n");
    world.reconnect();
    let reply = world.call(&[b"SET", b"k", &[b'v'; 1001]]);
    assert_eq!(
        reply,
        "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    );
    assert!(world.client.is_closed());
}

#[test]
fn large_values_arrive_in_pieces() {
    let value: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let request = multibulk(&[b"SET", b"big", &value]);
    let mut world = World::new();
    let chunks: Vec<&[u8]> = request.chunks(1460).collect();
    assert_eq!(world.send_chunks(&chunks), [b"+OK\r\n".to_vec()]);
    let mut expected = b"$1048576\r\n".to_vec();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    let got = world.send_chunks(&[&multibulk(&[b"GET", b"big"])]);
    assert!(got == [expected]);
}

/// A script mixing requests of every kind and quirk, for the splitting
/// test; it ends with a protocol error after which nothing counts.
fn script() -> Vec<u8> {
    let mut script = Vec::new();
    script.extend_from_slice(b"SET a 1\r\n");
    script.extend_from_slice(&multibulk(&[b"SET", b"b", b"two\r\nwords"]));
    script.extend_from_slice(b"INCR a\nGET \"b\"\r\n\r\n*0\r\n");
    script.extend_from_slice(b"RPUSH l x y z\r\nMULTI\r\nLPOP l\r\nHSET h f v\r\nEXEC\r\n");
    script.extend_from_slice(b"ZADD z 1 a 2.5 b\r\nZRANGE z 0 -1 WITHSCORES\r\nECHO 'q'\r\n");
    script.extend_from_slice(&multibulk(&[b"SET", b"big", &[b'x'; 5000]]));
    script.extend_from_slice(b"EXISTS a b x\r\nDEL a b c\r\nfoo bar\r\nSET b 1\r\n");
    script.extend_from_slice(b"*x\r\nPING\r\n");
    script
}

#[test]
fn splitting_input_anywhere_changes_nothing() {
    let script = script();
    let mut whole = World::new();
    let expected = whole.send(&script);
    let mut rng = XorShift(0x5eed_0001);
    for max in [1, 2, 3, 7, 100, 5000] {
        let chunks = random_chunks(&mut rng, &script, max);
        let mut split = World::new();
        let got: String = split
            .send_chunks(&chunks)
            .iter()
            .map(|reply| String::from_utf8_lossy(reply).into_owned())
            .collect();
        assert_eq!(got, expected, "chunks of {max}");
        assert_eq!(super::dump(&split.kv), super::dump(&whole.kv));
    }
}

/// Random input built from protocol fragments and random bytes.
fn hostile(rng: &mut XorShift) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"*",
        b"$",
        b"\r\n",
        b"\r",
        b"\n",
        b"0",
        b"1",
        b"2",
        b"3",
        b"-1",
        b"-",
        b"+",
        b"10",
        b"99999999999999999999",
        b"9223372036854775807",
        b"65536",
        b"70000",
        b"SET",
        b"GET",
        b"DEL",
        b"INCR",
        b"EXISTS",
        b"PING",
        b"ECHO",
        b"QUIT",
        b"DBSIZE",
        b"MULTI",
        b"EXEC",
        b"LPUSH",
        b"ZADD",
        b"HSET",
        b"SADD",
        b"SPOP",
        b"EXPIRE",
        b"HELLO",
        b"3",
        b"inf",
        b" ",
        b"\t",
        b"\"",
        b"'",
        b"\\",
        b"\\x4",
        b"a",
        b"b",
        b"\0",
        b"*2\r\n",
        b"$3\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n",
    ];
    let mut input = Vec::new();
    for _ in 0..rng.below(300) {
        match rng.below(10) {
            0 => input.push(rng.next() as u8),
            1 => input.extend(core::iter::repeat_n(b'z', rng.below(2000))),
            _ => input.extend_from_slice(PIECES[rng.below(PIECES.len())]),
        }
    }
    input
}

#[test]
fn hostile_input_neither_panics_nor_depends_on_packet_boundaries() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        let input = hostile(&mut rng);
        let mut whole = World::new();
        let expected = whole.send_chunks(&[&input]);
        let max = 1 + rng.below(20);
        let chunks = random_chunks(&mut rng, &input, max);
        let mut split = World::new();
        assert!(split.send_chunks(&chunks) == expected, "round {round}");
        assert_eq!(super::dump(&split.kv), super::dump(&whole.kv));
        for reply in &expected {
            assert!(reply.ends_with(b"\r\n"), "round {round}");
        }
        // What was logged replays to the same store.
        assert_eq!(
            super::dump(&super::replayed(&whole.host.logged)),
            super::dump(&whole.kv),
            "round {round}"
        );
    }
}
