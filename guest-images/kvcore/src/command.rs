//! The commands: what each request does to the store, replies and logs.

use alloc::vec::Vec;

use crate::Store;
use crate::int;
use crate::log::Change;
use crate::resp::{self, EMPTY_ARRAY, NULL_BULK};

/// What the server does for one request.
pub struct Outcome {
    /// The RESP2 reply to send to the client.
    pub reply: Vec<u8>,
    /// For a command that changes the store: the entry to append to the
    /// disk log with [`crate::log::LogWriter::append`]. The change is not
    /// made yet (the log is written ahead): once the entry is flushed, the
    /// server applies it with [`Store::apply_entry`] and sends `reply`; if
    /// it cannot be made durable, the store stays as it was and the client
    /// gets an error instead.
    pub log: Option<Vec<u8>>,
    /// Close the connection once `reply` is sent (QUIT).
    pub close: bool,
}

impl Outcome {
    fn reply(reply: Vec<u8>) -> Self {
        Self {
            reply,
            log: None,
            close: false,
        }
    }

    /// A change to make once it is logged.
    fn change(reply: Vec<u8>, change: &Change<'_>) -> Self {
        Self {
            reply,
            log: Some(change.encode()),
            close: false,
        }
    }

    pub(crate) fn protocol_error(error: resp::ProtocolError) -> Self {
        Self::reply(error.reply())
    }
}

#[derive(Clone, Copy)]
enum Op {
    Ping,
    Echo,
    Set,
    Get,
    Del,
    Exists,
    Incr,
    DbSize,
    Command,
    Quit,
}

struct Spec {
    /// Lower case, as Redis names commands in errors.
    name: &'static [u8],
    op: Op,
    /// Arguments including the name.
    min_args: usize,
    max_args: usize,
}

const fn spec(name: &'static [u8], op: Op, min_args: usize, max_args: usize) -> Spec {
    Spec {
        name,
        op,
        min_args,
        max_args,
    }
}

const ANY: usize = usize::MAX;

/// Redis's arities; SET's options and PING's extra arguments are checked
/// by the command, as Redis does, for its exact error.
const COMMANDS: &[Spec] = &[
    spec(b"get", Op::Get, 2, 2),
    spec(b"set", Op::Set, 3, ANY),
    spec(b"ping", Op::Ping, 1, ANY),
    spec(b"echo", Op::Echo, 2, 2),
    spec(b"del", Op::Del, 2, ANY),
    spec(b"exists", Op::Exists, 2, ANY),
    spec(b"incr", Op::Incr, 2, 2),
    spec(b"dbsize", Op::DbSize, 1, 1),
    spec(b"command", Op::Command, 1, ANY),
    spec(b"quit", Op::Quit, 1, ANY),
];

/// Runs one request (`args` holds at least the command name) against
/// `store`, which it only reads: a change comes back as the outcome's log
/// entry.
pub(crate) fn execute(store: &Store, args: &[Vec<u8>]) -> Outcome {
    let Some((name, rest)) = args.split_first() else {
        return Outcome::reply(Vec::new());
    };
    let Some(spec) = COMMANDS
        .iter()
        .find(|spec| eq_ignore_ascii_case(name, spec.name))
    else {
        return Outcome::reply(unknown_command(name, rest));
    };
    if args.len() < spec.min_args || args.len() > spec.max_args {
        return Outcome::reply(wrong_arity(spec.name));
    }
    match (spec.op, rest) {
        (Op::Ping, []) => Outcome::reply(resp::simple(b"PONG")),
        (Op::Ping, [message]) => Outcome::reply(resp::bulk(message)),
        (Op::Ping, _) => Outcome::reply(wrong_arity(spec.name)),
        (Op::Echo, [message]) => Outcome::reply(resp::bulk(message)),
        (Op::Set, [key, value]) => {
            Outcome::change(resp::simple(b"OK"), &Change::Set { key, value })
        }
        // Options (EX, NX, GET...) are not supported.
        (Op::Set, _) => Outcome::reply(resp::error(b"ERR syntax error")),
        (Op::Get, [key]) => Outcome::reply(match store.get(key) {
            Some(value) => resp::bulk(value),
            None => NULL_BULK.to_vec(),
        }),
        (Op::Del, keys) => del(store, keys),
        (Op::Exists, keys) => {
            let count = keys.iter().filter(|key| store.contains(key)).count();
            Outcome::reply(resp::integer(count as i64))
        }
        (Op::Incr, [key]) => incr(store, key),
        (Op::DbSize, []) => Outcome::reply(resp::integer(store.len() as i64)),
        // redis-cli asks for COMMAND DOCS on start; it copes with none.
        (Op::Command, _) => Outcome::reply(EMPTY_ARRAY.to_vec()),
        (Op::Quit, _) => Outcome {
            close: true,
            ..Outcome::reply(resp::simple(b"OK"))
        },
        // The arity check above rules these out.
        (Op::Echo | Op::Get | Op::Incr | Op::DbSize, _) => Outcome::reply(wrong_arity(spec.name)),
    }
}

fn del(store: &Store, keys: &[Vec<u8>]) -> Outcome {
    // The log names only the keys this DEL removes, each once; deleting
    // them from the same earlier state replays it exactly.
    let mut removed: Vec<&[u8]> = Vec::new();
    for key in keys {
        if store.contains(key) && !removed.contains(&key.as_slice()) {
            removed.push(key);
        }
    }
    let reply = resp::integer(removed.len() as i64);
    if removed.is_empty() {
        return Outcome::reply(reply);
    }
    Outcome::change(reply, &Change::Delete(removed))
}

fn incr(store: &Store, key: &[u8]) -> Outcome {
    let current = match store.get(key) {
        None => 0,
        Some(value) => match int::parse_i64(value) {
            Some(current) => current,
            None => {
                return Outcome::reply(resp::error(b"ERR value is not an integer or out of range"));
            }
        },
    };
    let Some(next) = current.checked_add(1) else {
        return Outcome::reply(resp::error(b"ERR increment or decrement would overflow"));
    };
    let mut value = Vec::new();
    int::push_i64(&mut value, next);
    // Logged as the value it set, so replay does not depend on the old one.
    Outcome::change(resp::integer(next), &Change::Set { key, value: &value })
}

/// How much of the command name and of its arguments Redis quotes back.
const ECHO_LIMIT: usize = 128;

/// Redis 7's `unknown command '%.128s', with args beginning with: %s`,
/// where the arguments part grows by `'%.*s' ` while it is under 128 bytes.
fn unknown_command(name: &[u8], rest: &[Vec<u8>]) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(b"ERR unknown command '");
    message.extend_from_slice(c_string(name, ECHO_LIMIT));
    message.extend_from_slice(b"', with args beginning with: ");
    let mut quoted = Vec::new();
    for arg in rest {
        if quoted.len() >= ECHO_LIMIT {
            break;
        }
        let budget = ECHO_LIMIT - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_string(arg, budget));
        quoted.extend_from_slice(b"' ");
    }
    message.extend_from_slice(&quoted);
    // The arguments are the client's bytes: keep the reply one line.
    for byte in &mut message {
        if *byte == b'\r' || *byte == b'\n' {
            *byte = b' ';
        }
    }
    resp::error(&message)
}

/// `%.Ns` of `bytes`: up to its first NUL, at most `max` bytes.
fn c_string(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(bytes.len())
        .min(max);
    bytes.get(..end).unwrap_or_default()
}

fn wrong_arity(name: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(b"ERR wrong number of arguments for '");
    message.extend_from_slice(name);
    message.extend_from_slice(b"' command");
    resp::error(&message)
}

/// Byte-wise, so no precompiled core code is reached.
fn eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}
