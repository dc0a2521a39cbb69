//! End-to-end tests of connections: requests in, replies and log entries
//! out, byte for byte.

use alloc::vec::Vec;
use std::string::String;
use std::{format, vec};

use crate::{Connection, MAX_REQUEST, Store};

/// One outcome, comparable.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    reply: String,
    log: Option<Vec<u8>>,
    close: bool,
}

/// Feeds `chunks` to one connection, running requests after each.
fn session(store: &mut Store, chunks: &[&[u8]]) -> Vec<Seen> {
    let mut connection = Connection::new();
    let mut seen = Vec::new();
    for chunk in chunks {
        connection.receive(chunk);
        while let Some(outcome) = connection.next_request(store) {
            // As the server does once the entry is on the disk.
            if let Some(entry) = &outcome.log {
                assert!(store.apply_entry(entry));
            }
            seen.push(Seen {
                reply: String::from_utf8_lossy(&outcome.reply).into_owned(),
                log: outcome.log,
                close: outcome.close,
            });
        }
        assert!(connection.buffered() <= MAX_REQUEST + 64);
    }
    seen
}

fn run(input: &[u8]) -> Vec<Seen> {
    session(&mut Store::new(), &[input])
}

/// The replies to `input`, concatenated.
fn replies(input: &[u8]) -> String {
    run(input).into_iter().map(|seen| seen.reply).collect()
}

/// `input`'s replies on a store holding `a` = `1`, `b` = `2`.
fn replies_with_ab(input: &[u8]) -> String {
    let mut store = Store::new();
    session(&mut store, &[b"SET a 1\r\nSET b 2\r\n"]);
    session(&mut store, &[input])
        .into_iter()
        .map(|seen| seen.reply)
        .collect()
}

/// A multibulk request.
pub(crate) fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A tiny deterministic generator for property tests.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Cuts `input` into random chunks.
fn random_chunks<'a>(rng: &mut XorShift, input: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let len = (1 + rng.below(max)).min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

const PROTOCOL_PREFIX: &str = "-ERR Protocol error: ";

fn protocol_error(what: &str) -> String {
    format!("{PROTOCOL_PREFIX}{what}\r\n")
}

// Commands.

#[test]
fn ping() {
    assert_eq!(replies(b"PING\r\n"), "+PONG\r\n");
    assert_eq!(replies(b"PING hello\r\n"), "$5\r\nhello\r\n");
    assert_eq!(replies(&multibulk(&[b"PING"])), "+PONG\r\n");
    assert_eq!(replies(&multibulk(&[b"PING", b""])), "$0\r\n\r\n");
    assert_eq!(
        replies(b"PING a b\r\n"),
        "-ERR wrong number of arguments for 'ping' command\r\n"
    );
}

#[test]
fn echo() {
    assert_eq!(replies(b"ECHO hi\r\n"), "$2\r\nhi\r\n");
    assert_eq!(
        replies(&multibulk(&[b"ECHO", b"a\r\nb\0"])),
        "$5\r\na\r\nb\0\r\n"
    );
    assert_eq!(
        replies(b"ECHO\r\n"),
        "-ERR wrong number of arguments for 'echo' command\r\n"
    );
    assert_eq!(
        replies(b"ECHO a b\r\n"),
        "-ERR wrong number of arguments for 'echo' command\r\n"
    );
}

#[test]
fn set_and_get() {
    let seen = run(b"SET a 1\r\nGET a\r\nSET a hello\r\nGET a\r\nGET nothing\r\n");
    let replies: Vec<&str> = seen.iter().map(|seen| seen.reply.as_str()).collect();
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "$1\r\n1\r\n",
            "+OK\r\n",
            "$5\r\nhello\r\n",
            "$-1\r\n"
        ]
    );
    assert_eq!(seen[0].log.as_deref(), Some(&b"S\x01a1"[..]));
    assert_eq!(seen[1].log, None);
    assert_eq!(seen[2].log.as_deref(), Some(&b"S\x01ahello"[..]));
    assert!(seen.iter().all(|seen| !seen.close));

    let mut store = Store::new();
    let seen = session(&mut store, &[&multibulk(&[b"SET", b"k\0\r\n", b""])]);
    assert_eq!(seen[0].reply, "+OK\r\n");
    assert_eq!(store.get(b"k\0\r\n"), Some(&b""[..]));
    assert_eq!(store.len(), 1);
}

#[test]
fn set_refuses_options_and_checks_arity() {
    let seen = run(b"SET a 1 EX 10\r\nSET a 1 NX\r\nGET a\r\n");
    assert_eq!(seen[0].reply, "-ERR syntax error\r\n");
    assert_eq!(seen[1].reply, "-ERR syntax error\r\n");
    assert_eq!(seen[2].reply, "$-1\r\n");
    assert!(seen.iter().all(|seen| seen.log.is_none()));
    assert_eq!(
        replies(b"SET a\r\nSET\r\nGET\r\nGET a b\r\n"),
        "-ERR wrong number of arguments for 'set' command\r\n\
         -ERR wrong number of arguments for 'set' command\r\n\
         -ERR wrong number of arguments for 'get' command\r\n\
         -ERR wrong number of arguments for 'get' command\r\n"
    );
}

/// Issue 14: a request changes nothing until the server applies its log
/// entry, so a change that cannot be made durable leaves no trace.
#[test]
fn requests_change_the_store_only_when_their_entry_is_applied() {
    let mut store = Store::new();
    session(&mut store, &[b"SET a 1\r\n"]);
    let before = store.clone();
    let mut connection = Connection::new();
    connection.receive(b"SET a 2\r\nINCR a\r\nDEL a\r\nSET b 3\r\n");
    let mut entries = Vec::new();
    while let Some(outcome) = connection.next_request(&store) {
        entries.push(outcome.log.unwrap());
    }
    assert_eq!(entries.len(), 4);
    assert!(store == before);
    // Applied in order, they make the changes the replies announced.
    for entry in &entries {
        assert!(store.apply_entry(entry));
    }
    assert_eq!(store.get(b"a"), None);
    assert_eq!(store.get(b"b"), Some(&b"3"[..]));
    assert!(!store.apply_entry(b"X"));
}

#[test]
fn del() {
    let mut store = Store::new();
    session(&mut store, &[b"SET a 1\r\nSET b 2\r\nSET c 3\r\n"]);
    let seen = session(&mut store, &[b"DEL a b x a\r\nDEL a\r\nDEL\r\n"]);
    assert_eq!(seen[0].reply, ":2\r\n");
    assert_eq!(seen[0].log.as_deref(), Some(&b"D\x01a\x01b"[..]));
    assert_eq!(seen[1].reply, ":0\r\n");
    assert_eq!(seen[1].log, None);
    assert_eq!(
        seen[2].reply,
        "-ERR wrong number of arguments for 'del' command\r\n"
    );
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(b"c"), Some(&b"3"[..]));
}

#[test]
fn exists_counts_every_argument() {
    assert_eq!(replies_with_ab(b"EXISTS a\r\n"), ":1\r\n");
    assert_eq!(replies_with_ab(b"EXISTS a a b x\r\n"), ":3\r\n");
    assert_eq!(replies_with_ab(b"EXISTS x\r\n"), ":0\r\n");
    assert_eq!(
        replies(b"EXISTS\r\n"),
        "-ERR wrong number of arguments for 'exists' command\r\n"
    );
}

#[test]
fn incr() {
    let seen = run(b"INCR n\r\nINCR n\r\nGET n\r\n");
    assert_eq!(seen[0].reply, ":1\r\n");
    assert_eq!(seen[0].log.as_deref(), Some(&b"S\x01n1"[..]));
    assert_eq!(seen[1].reply, ":2\r\n");
    assert_eq!(seen[1].log.as_deref(), Some(&b"S\x01n2"[..]));
    assert_eq!(seen[2].reply, "$1\r\n2\r\n");

    let incr_from = |value: &[u8]| {
        let mut store = Store::new();
        session(&mut store, &[&multibulk(&[b"SET", b"n", value])]);
        let seen = session(&mut store, &[b"INCR n\r\n"]);
        (
            seen[0].reply.clone(),
            seen[0].log.clone(),
            store.get(b"n").map(<[u8]>::to_vec),
        )
    };
    assert_eq!(incr_from(b"-1").0, ":0\r\n");
    assert_eq!(
        incr_from(b"-9223372036854775808").0,
        ":-9223372036854775807\r\n"
    );
    assert_eq!(
        incr_from(b"9223372036854775806").0,
        ":9223372036854775807\r\n"
    );
    let overflow = incr_from(b"9223372036854775807");
    assert_eq!(overflow.0, "-ERR increment or decrement would overflow\r\n");
    assert_eq!(overflow.1, None);
    assert_eq!(overflow.2.as_deref(), Some(&b"9223372036854775807"[..]));
    for value in [
        &b"abc"[..],
        b"",
        b" 1",
        b"1 ",
        b"+1",
        b"01",
        b"-0",
        b"1.5",
        b"9223372036854775808",
        b"99999999999999999999999",
    ] {
        let (reply, log, stored) = incr_from(value);
        assert_eq!(reply, "-ERR value is not an integer or out of range\r\n");
        assert_eq!(log, None);
        assert_eq!(stored.as_deref(), Some(value));
    }
    assert_eq!(
        replies(b"INCR\r\nINCR a b\r\n"),
        "-ERR wrong number of arguments for 'incr' command\r\n\
         -ERR wrong number of arguments for 'incr' command\r\n"
    );
}

#[test]
fn dbsize() {
    assert_eq!(replies(b"DBSIZE\r\n"), ":0\r\n");
    assert_eq!(replies_with_ab(b"DBSIZE\r\n"), ":2\r\n");
    assert_eq!(
        replies_with_ab(b"SET c 3\r\nDEL a\r\nDBSIZE\r\n"),
        "+OK\r\n:1\r\n:2\r\n"
    );
    assert_eq!(
        replies(b"DBSIZE x\r\n"),
        "-ERR wrong number of arguments for 'dbsize' command\r\n"
    );
}

#[test]
fn command_replies_an_empty_array() {
    assert_eq!(replies(&multibulk(&[b"COMMAND", b"DOCS"])), "*0\r\n");
    assert_eq!(replies(b"COMMAND\r\n"), "*0\r\n");
}

#[test]
fn quit_closes_and_ignores_the_rest() {
    let store = Store::new();
    let mut connection = Connection::new();
    connection.receive(b"PING\r\nQUIT\r\nSET a 1\r\n");
    assert_eq!(connection.next_request(&store).unwrap().reply, b"+PONG\r\n");
    assert!(!connection.is_closed());
    let quit = connection.next_request(&store).unwrap();
    assert_eq!(quit.reply, b"+OK\r\n");
    assert!(quit.close);
    assert!(quit.log.is_none());
    assert!(connection.is_closed());
    connection.receive(b"SET b 2\r\n");
    assert!(connection.next_request(&store).is_none());
    assert!(store.is_empty());
    assert_eq!(connection.buffered(), 0);
    // QUIT takes any arguments.
    assert!(run(&multibulk(&[b"quit", b"now"]))[0].close);
}

#[test]
fn command_names_ignore_case() {
    assert_eq!(
        replies(b"pInG\r\nset a 1\r\nGeT a\r\nexists A a\r\n"),
        "+PONG\r\n+OK\r\n$1\r\n1\r\n:1\r\n"
    );
}

#[test]
fn unknown_command() {
    assert_eq!(
        replies(b"foo a b\r\n"),
        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        replies(b"FOO\r\n"),
        "-ERR unknown command 'FOO', with args beginning with: \r\n"
    );
    assert_eq!(
        replies(b"\"\"\r\n"),
        "-ERR unknown command '', with args beginning with: \r\n"
    );
    // CR and LF become spaces; a NUL ends an argument, as C's %s does.
    assert_eq!(
        replies(&multibulk(&[b"x\r\ny", b"a\nb", b"c\0d", b""])),
        "-ERR unknown command 'x  y', with args beginning with: 'a b' 'c' '' \r\n"
    );
    // The name is cut at 128 bytes, the arguments once they reach 128.
    let name = vec![b'n'; 200];
    let arg = vec![b'a'; 100];
    let reply = replies(&multibulk(&[&name, &arg, &arg, &arg]));
    let expected = format!(
        "-ERR unknown command '{}', with args beginning with: '{}' '{}' \r\n",
        "n".repeat(128),
        "a".repeat(100),
        "a".repeat(128 - 103),
    );
    assert_eq!(reply, expected);
}

// Framing.

#[test]
fn pipelined_requests_run_one_by_one() {
    let mut store = Store::new();
    let mut connection = Connection::new();
    let mut input = b"SET a 1\r\nINCR a\n".to_vec();
    input.extend_from_slice(&multibulk(&[b"GET", b"a"]));
    input.extend_from_slice(b"PING\r\nGET a");
    connection.receive(&input);
    let mut next = || {
        let outcome = connection.next_request(&store)?;
        if let Some(entry) = &outcome.log {
            store.apply_entry(entry);
        }
        Some(outcome.reply)
    };
    assert_eq!(next().unwrap(), b"+OK\r\n");
    assert_eq!(next().unwrap(), b":2\r\n");
    assert_eq!(next().unwrap(), b"$1\r\n2\r\n");
    assert_eq!(next().unwrap(), b"+PONG\r\n");
    assert!(next().is_none());
    connection.receive(b"\r\n");
    assert_eq!(
        connection.next_request(&store).unwrap().reply,
        b"$1\r\n2\r\n"
    );
    assert!(connection.next_request(&store).is_none());
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
    let mut store = Store::new();
    let seen = session(
        &mut store,
        &[b"SET \"a b\" 'c d'\r\nSET k \"\"\r\nSET x \"\\x41\\n\\\"\"\r\nECHO 'it\\'s'\r\nSET \"q\"'r' 1\r\n"],
    );
    assert_eq!(seen[0].reply, "+OK\r\n");
    assert_eq!(store.get(b"a b"), Some(&b"c d"[..]));
    assert_eq!(store.get(b"k"), Some(&b""[..]));
    assert_eq!(store.get(b"x"), Some(&b"A\n\""[..]));
    assert_eq!(seen[3].reply, "$4\r\nit's\r\n");
    assert_eq!(
        seen[4].reply,
        protocol_error("unbalanced quotes in request")
    );
    assert_eq!(store.len(), 3);
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

/// A script mixing every kind of request, error and quirk, for the
/// splitting tests: a short head, split at every byte, and a tail with
/// oversized requests.
fn script() -> (Vec<u8>, Vec<u8>) {
    let mut head = Vec::new();
    head.extend_from_slice(b"SET a 1\r\n");
    head.extend_from_slice(&multibulk(&[b"SET", b"b", b"two\r\nwords"]));
    head.extend_from_slice(b"INCR a\nGET \"b\"\r\n\r\n*0\r\n");
    head.extend_from_slice(b"*x\r\nPING\r\n*1\r\n$-1\r\nECHO 'q'\r\n");
    head.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\nEXISTS a b x\r\n");
    head.extend_from_slice(b"SET \"a\r\nDEL a b c\r\nfoo bar\r\nSET b 1\r\n");
    let mut tail = b"*1\r\n$70000\r\n".to_vec();
    while tail.len() < 12 + 70_000 {
        tail.extend_from_slice(b"DEL b\r\n");
    }
    tail.truncate(12 + 70_000);
    tail.extend_from_slice(b"\r\nDBSIZE\r\n*100000\r\n$1\r\nx\r\n");
    for _ in 0..99_999 {
        tail.extend_from_slice(b"$0\r\n\r\n");
    }
    tail.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$3\r\nend\r\nQUIT\r\nPING\r\n");
    (head, tail)
}

#[test]
fn splitting_input_anywhere_changes_nothing() {
    let (head, tail) = script();
    let script = [head.as_slice(), &tail].concat();
    let mut store = Store::new();
    let whole = session(&mut store, &[&script]);
    let replies: String = whole.iter().map(|seen| seen.reply.as_str()).collect();
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "+OK\r\n",
            ":2\r\n",
            "$10\r\ntwo\r\nwords\r\n",
            &protocol_error("invalid multibulk length"),
            "+PONG\r\n",
            &protocol_error("invalid bulk length"),
            "$1\r\nq\r\n",
            &protocol_error("expected '$', got 'f'"),
            ":2\r\n",
            &protocol_error("unbalanced quotes in request"),
            ":2\r\n",
            "-ERR unknown command 'foo', with args beginning with: 'bar' \r\n",
            "+OK\r\n",
            &protocol_error("invalid bulk length"),
            ":1\r\n",
            &protocol_error("invalid multibulk length"),
            "$3\r\nend\r\n",
            "+OK\r\n",
        ]
        .concat()
    );
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(b"b"), Some(&b"1"[..]));
    assert!(whole.last().unwrap().close);

    let head_whole = session(&mut Store::new(), &[&head]);
    for split in 0..=head.len() {
        let (first, second) = head.split_at(split);
        assert_eq!(
            session(&mut Store::new(), &[first, second]),
            head_whole,
            "split at {split}"
        );
    }
    let bytes: Vec<&[u8]> = head.chunks(1).collect();
    assert_eq!(session(&mut Store::new(), &bytes), head_whole);

    let mut rng = XorShift(0x1234_5678);
    for max in [1, 2, 3, 7, 100, 5000] {
        let chunks = random_chunks(&mut rng, &script, max);
        let mut split_store = Store::new();
        assert_eq!(session(&mut split_store, &chunks), whole, "chunks of {max}");
        assert!(split_store == store);
    }
}

#[test]
fn partial_requests_wait() {
    let mut store = Store::new();
    let mut connection = Connection::new();
    let request = multibulk(&[b"SET", b"key", b"value"]);
    for &byte in &request[..request.len() - 1] {
        connection.receive(&[byte]);
        assert!(connection.next_request(&store).is_none());
    }
    connection.receive(&request[request.len() - 1..]);
    let set = connection.next_request(&store).unwrap();
    assert_eq!(set.reply, b"+OK\r\n");
    assert!(store.apply_entry(&set.log.unwrap()));
    for &byte in b"GET key" {
        connection.receive(&[byte]);
        assert!(connection.next_request(&store).is_none());
    }
    connection.receive(b"\n");
    assert_eq!(
        connection.next_request(&store).unwrap().reply,
        b"$5\r\nvalue\r\n"
    );
}

// Protocol errors: each is replied and the connection carries on after
// the line where it was found.

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
        let mut input = header.to_vec();
        input.extend_from_slice(b"\r\nPING\r\n");
        assert_eq!(
            replies(&input),
            protocol_error("invalid multibulk length") + "+PONG\r\n",
            "{}",
            String::from_utf8_lossy(header)
        );
    }
    // Too long to be a number: refused before its end arrives.
    let store = Store::new();
    let mut connection = Connection::new();
    connection.receive(b"*123456789012345678901");
    assert_eq!(
        connection.next_request(&store).unwrap().reply,
        protocol_error("invalid multibulk length").as_bytes()
    );
    connection.receive(b"2345\r\nPING\r\n");
    assert_eq!(connection.next_request(&store).unwrap().reply, b"+PONG\r\n");
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
    ] {
        let mut input = b"*2\r\n$4\r\nECHO\r\n".to_vec();
        input.extend_from_slice(header);
        input.extend_from_slice(b"\r\nPING\r\n");
        assert_eq!(
            replies(&input),
            protocol_error("invalid bulk length") + "+PONG\r\n",
            "{}",
            String::from_utf8_lossy(header)
        );
    }
}

#[test]
fn expected_dollar() {
    assert_eq!(
        replies(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\nPING\r\n"),
        protocol_error("expected '$', got 'f'") + "+PONG\r\n"
    );
    // CR and LF are shown as spaces; the \r\n after it ends the line.
    assert_eq!(
        replies(b"*1\r\n\r\nPING\r\n"),
        protocol_error("expected '$', got ' '") + "+PONG\r\n"
    );
    assert_eq!(
        replies(b"*1\r\n\nPING\r\n"),
        protocol_error("expected '$', got ' '") + "+PONG\r\n"
    );
    // A NUL ends Redis's C-string message early.
    assert_eq!(
        replies(b"*1\r\n\0\r\nPING\r\n"),
        "-ERR Protocol error: expected '$', got '\r\n+PONG\r\n"
    );
    // A new request where an argument was due is refused, as in Redis:
    // its first line goes, the rest is read afresh.
    assert_eq!(
        replies(b"*2\r\n$4\r\nECHO\r\n*1\r\n$4\r\nPING\r\n"),
        protocol_error("expected '$', got '*'")
            + "-ERR unknown command '$4', with args beginning with: \r\n+PONG\r\n"
    );
}

#[test]
fn unbalanced_quotes() {
    for line in [&b"ECHO \"a"[..], b"ECHO 'a", b"ECHO \"a\"x", b"SET 'a'b c"] {
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\nPING\r\n");
        assert_eq!(
            replies(&input),
            protocol_error("unbalanced quotes in request") + "+PONG\r\n"
        );
    }
}

// Oversized requests.

#[test]
fn a_request_of_max_size_is_accepted() {
    // SET k <value>: *3\r\n $3\r\nSET\r\n $1\r\nk\r\n $NNNNN\r\n value \r\n
    let overhead = 4 + 9 + 7 + 8 + 2;
    let value = vec![b'v'; MAX_REQUEST - overhead];
    let request = multibulk(&[b"SET", b"k", &value]);
    assert_eq!(request.len(), MAX_REQUEST);
    let mut store = Store::new();
    assert_eq!(session(&mut store, &[&request])[0].reply, "+OK\r\n");
    assert_eq!(store.get(b"k").map(<[u8]>::len), Some(value.len()));

    let value = vec![b'v'; MAX_REQUEST - overhead + 1];
    let request = multibulk(&[b"SET", b"k", &value]);
    assert_eq!(replies(&request), protocol_error("invalid bulk length"));

    let line = [b"ECHO ".as_slice(), &vec![b'e'; MAX_REQUEST - 6], b"\n"].concat();
    assert_eq!(line.len(), MAX_REQUEST);
    assert_eq!(run(&line)[0].reply.len(), MAX_REQUEST - 6 + 10);
    let line = [b"ECHO ".as_slice(), &vec![b'e'; MAX_REQUEST - 6], b"\r\n"].concat();
    assert_eq!(replies(&line), protocol_error("too big inline request"));
}

#[test]
fn an_oversized_bulk_string_is_skipped_whole() {
    // A 100 KiB value full of commands, sent in packets.
    let mut value = Vec::new();
    while value.len() < 100 * 1024 {
        value.extend_from_slice(b"\r\nDEL a\r\n*1\r\n$8\r\nFLUSHALL\r\nSET a 2\n");
    }
    let mut input = multibulk(&[b"SET", b"big", &value, b"extra"]);
    input.extend_from_slice(b"GET a\r\n");
    let mut store = Store::new();
    session(&mut store, &[b"SET a 1\r\n"]);
    let chunks: Vec<&[u8]> = input.chunks(1460).collect();
    let seen = session(&mut store, &chunks);
    let replies: Vec<&str> = seen.iter().map(|seen| seen.reply.as_str()).collect();
    assert_eq!(
        replies,
        [
            protocol_error("invalid bulk length").as_str(),
            "$1\r\n1\r\n"
        ]
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn many_arguments_over_the_limit_are_skipped() {
    // Each argument fits; together they do not.
    let half = vec![b'h'; MAX_REQUEST / 2];
    let mut input = multibulk(&[b"DEL", &half, &half, b"a"]);
    input.extend_from_slice(b"EXISTS a\r\n");
    assert_eq!(
        replies_with_ab(&input),
        protocol_error("invalid bulk length") + ":1\r\n"
    );

    // More arguments announced than could fit: refused on the header, then
    // all of them skipped.
    let count = MAX_REQUEST / 6;
    let mut input = format!("*{count}\r\n").into_bytes();
    for _ in 0..count {
        input.extend_from_slice(b"$3\r\nDEL\r\n");
    }
    input.extend_from_slice(b"EXISTS a\r\n");
    let seen = session(
        &mut Store::new(),
        &random_chunks(&mut XorShift(7), &input, 3000),
    );
    let replies: Vec<&str> = seen.iter().map(|seen| seen.reply.as_str()).collect();
    assert_eq!(
        replies,
        [
            protocol_error("invalid multibulk length").as_str(),
            ":0\r\n"
        ]
    );
}

#[test]
fn an_oversized_inline_request_is_skipped_to_its_newline() {
    let mut input = b"SET a ".to_vec();
    while input.len() < 100 * 1024 {
        input.extend_from_slice(b"x\rDEL b\r");
    }
    input.extend_from_slice(b"\r\nEXISTS a b\r\n");
    let chunks: Vec<&[u8]> = input.chunks(1000).collect();
    let mut store = Store::new();
    session(&mut store, &[b"SET b 1\r\n"]);
    let seen = session(&mut store, &chunks);
    let replies: Vec<&str> = seen.iter().map(|seen| seen.reply.as_str()).collect();
    assert_eq!(
        replies,
        [protocol_error("too big inline request").as_str(), ":1\r\n"]
    );
}

// Hostile input.

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
    for round in 0..3000 {
        let input = hostile(&mut rng);
        let mut whole_store = Store::new();
        let whole = session(&mut whole_store, &[&input]);
        let max = 1 + rng.below(20);
        let chunks = random_chunks(&mut rng, &input, max);
        let mut split_store = Store::new();
        let split = session(&mut split_store, &chunks);
        assert!(split == whole, "round {round}");
        assert!(split_store == whole_store, "round {round}");
        for seen in &whole {
            // Every reply is one well-formed RESP value ending in \r\n.
            assert!(seen.reply.ends_with("\r\n"), "round {round}");
        }
    }
}

#[test]
fn large_hostile_input_keeps_the_buffer_bounded() {
    let mut rng = XorShift(42);
    let mut input = Vec::new();
    while input.len() < 1 << 20 {
        input.extend_from_slice(&hostile(&mut rng));
        input.extend(core::iter::repeat_n(b'*', rng.below(100)));
        input.extend(core::iter::repeat_n(b'y', rng.below(70_000)));
    }
    // `session` checks the buffer after every packet.
    session(&mut Store::new(), &random_chunks(&mut rng, &input, 4000));
}
