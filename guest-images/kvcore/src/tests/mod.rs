//! End-to-end tests of connections: requests in, replies and log entries
//! out, byte for byte, against real Redis's replies where they can be
//! compared.

mod commands;
mod protocol;
mod reference;

use alloc::vec::Vec;
use std::string::String;
use std::{format, vec};

use crate::kv::{Host, Kv, Memory, Refusal, Status};
use crate::value::Value;
use crate::{Connection, MAX_REQUEST};

/// A small xorshift generator: the tests' randomness, seeded.
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

/// A host with a settable clock and refusal, unlimited memory unless set,
/// and the log as a list of entries.
pub(crate) struct TestHost {
    pub(crate) now: u64,
    /// Times the clock was read.
    pub(crate) clock_reads: u64,
    pub(crate) memory: Memory,
    pub(crate) refuse: Option<Refusal>,
    pub(crate) logged: Vec<Vec<u8>>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self {
            now: 1_700_000_000_000,
            clock_reads: 0,
            memory: Memory::UNLIMITED,
            refuse: None,
            logged: Vec::new(),
        }
    }
}

impl Host for TestHost {
    fn now_ms(&mut self) -> u64 {
        self.clock_reads += 1;
        self.now
    }

    fn memory(&self) -> Memory {
        self.memory
    }

    fn reserve(&mut self, _bytes: usize) -> Result<(), Refusal> {
        self.refuse.map_or(Ok(()), Err)
    }

    fn log(&mut self, entry: Vec<u8>) {
        self.logged.push(entry);
    }

    fn status(&self) -> Status {
        Status::default()
    }
}

/// A store, its host and one client connection.
pub(crate) struct World {
    pub(crate) kv: Kv,
    pub(crate) host: TestHost,
    pub(crate) client: Connection,
}

impl World {
    pub(crate) fn new() -> Self {
        Self {
            kv: Kv::new(),
            host: TestHost::default(),
            client: Connection::new(1),
        }
    }

    /// Feeds `chunks` to the client, running requests after each; the
    /// replies, concatenated.
    pub(crate) fn send_chunks(&mut self, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut replies = Vec::new();
        for chunk in chunks {
            self.client.receive(chunk);
            while let Some(outcome) = self.client.process(&mut self.kv, &mut self.host) {
                replies.push(outcome.reply);
            }
            assert!(self.client.buffered() <= chunk.len() + 64 + crate::MAX_INLINE);
        }
        replies
    }

    /// The replies to `input`, concatenated, as text.
    pub(crate) fn send(&mut self, input: &[u8]) -> String {
        let replies = self.send_chunks(&[input]);
        String::from_utf8_lossy(&replies.concat()).into_owned()
    }

    /// The reply to one multibulk request.
    pub(crate) fn call(&mut self, args: &[&[u8]]) -> String {
        self.send(&multibulk(args))
    }

    /// A new client connection to the same store.
    pub(crate) fn reconnect(&mut self) {
        self.client = Connection::new(2);
    }
}

/// The replies to `input` on a fresh store.
pub(crate) fn replies(input: &[u8]) -> String {
    World::new().send(input)
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

/// `input` split at random points into pieces of at most `max` bytes.
pub(crate) fn random_chunks<'a>(rng: &mut XorShift, input: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let len = (1 + rng.below(max)).min(rest.len());
        let (chunk, after) = rest.split_at(len);
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// A canonical description of the store's contents, to compare stores:
/// every key, expired or not.
pub(crate) fn dump(kv: &Kv) -> Vec<String> {
    dump_at(kv, 0)
}

/// The lines of a [`dump`] whose key is alive after `now`.
pub(crate) fn alive(lines: &[String], now: u64) -> Vec<String> {
    lines
        .iter()
        .filter(|line| {
            let deadline = line
                .rsplit("expires Some(")
                .next()
                .filter(|_| line.contains("expires Some("))
                .and_then(|rest| rest.trim_end_matches(')').parse::<u64>().ok());
            deadline.is_none_or(|deadline| deadline > now)
        })
        .cloned()
        .collect()
}

/// The keys alive after `now`, described canonically.
pub(crate) fn dump_at(kv: &Kv, now: u64) -> Vec<String> {
    let mut lines = Vec::new();
    // Values by a digest of their parts, to keep comparisons quick.
    let digest = |parts: &mut dyn Iterator<Item = &[u8]>| {
        let mut hasher = twox_hash::XxHash64::with_seed(0);
        for part in parts {
            core::hash::Hasher::write(&mut hasher, &(part.len() as u64).to_le_bytes());
            core::hash::Hasher::write(&mut hasher, part);
        }
        core::hash::Hasher::finish(&hasher)
    };
    kv.db.walk(0, |slot| {
        let value = match &slot.value {
            Value::Str(value) => format!("string {:x}", digest(&mut core::iter::once(&value[..]))),
            Value::List(list) => format!("list {:x}", digest(&mut list.iter().map(Vec::as_slice))),
            Value::Set(set) => format!("set {:x}", digest(&mut set.iter().map(Vec::as_slice))),
            Value::Hash(hash) => format!(
                "hash {:x}",
                digest(&mut hash.iter().flat_map(|(f, v)| [f.as_slice(), v.as_slice()]))
            ),
            Value::ZSet(zset) => {
                let scores: Vec<[u8; 8]> = zset
                    .iter()
                    .map(|(_, s)| s.to_bits().to_le_bytes())
                    .collect();
                let mut parts = zset
                    .iter()
                    .map(|(member, _)| member)
                    .chain(scores.iter().map(|s| &s[..]));
                format!("zset {:x}", digest(&mut parts))
            }
        };
        if slot.expires.is_none_or(|deadline| deadline > now) {
            lines.push(format!("{:?} {value} expires {:?}", slot.key, slot.expires));
        }
        false
    });
    lines.sort();
    lines
}

/// Replays `entries` into a fresh store.
pub(crate) fn replayed(entries: &[Vec<u8>]) -> Kv {
    let mut kv = Kv::new();
    let mut now = 0;
    for entry in entries {
        now = kv.replay(entry, now).expect("a logged entry replays");
    }
    kv
}

/// The protocol error reply Redis words as `what`.
pub(crate) fn protocol_error(what: &str) -> String {
    format!("-ERR Protocol error: {what}\r\n")
}

#[test]
fn replies_match_real_redis() {
    for (index, (proto, commands, expected)) in reference::CASES.iter().enumerate() {
        let mut world = World::new();
        if *proto == 3 {
            world.call(&[b"HELLO", b"3"]);
        }
        let mut got = Vec::new();
        for args in commands.iter() {
            got.extend_from_slice(world.call(args).as_bytes());
        }
        let commands: Vec<String> = commands
            .iter()
            .map(|args| {
                args.iter()
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "case {index}: {commands:?}"
        );
        // What the case logged replays to the same store.
        assert_eq!(
            dump(&replayed(&world.host.logged)),
            dump(&world.kv),
            "case {index}"
        );
    }
}

#[test]
fn a_request_of_max_size_is_accepted() {
    // SET k <value>: *3\r\n $3\r\nSET\r\n $1\r\nk\r\n $NNNNNNN\r\n value \r\n
    let overhead = 4 + 9 + 7 + 10 + 2;
    let value = vec![b'v'; MAX_REQUEST - overhead];
    let request = multibulk(&[b"SET", b"k", &value]);
    assert_eq!(request.len(), MAX_REQUEST);
    let mut world = World::new();
    assert_eq!(world.send(&request), "+OK\r\n");
    assert_eq!(
        world.call(&[b"STRLEN", b"k"]),
        format!(":{}\r\n", value.len())
    );
    // One byte more: refused, and the connection closes.
    let value = vec![b'v'; MAX_REQUEST - overhead + 1];
    let mut request = multibulk(&[b"SET", b"k", &value]);
    request.extend_from_slice(b"PING\r\n");
    assert_eq!(replies(&request), protocol_error("invalid bulk length"));
}
