//! The command table and what the commands share: arity, flags, argument
//! parsing and Redis's error wording.

mod hashes;
mod keys;
mod lists;
mod server;
mod sets;
mod strings;
mod zsets;

use alloc::vec::Vec;

use crate::db::{Clock, Slot};
use crate::int;
use crate::kv::Ctx;
use crate::reply;
use crate::value::Value;

/// May change the store: logged when it did.
const WRITE: u8 = 1;
/// Adds data: refused while memory is over the limit.
const DENYOOM: u8 = 2;
/// Runs at once inside MULTI instead of being queued.
const NOQUEUE: u8 = 4;
/// Closes the connection after its reply.
const CLOSE: u8 = 8;

type Run = fn(&mut Ctx, &mut [Vec<u8>]);

pub(crate) struct Command {
    /// Lower case, as Redis names commands in errors.
    name: &'static [u8],
    /// Redis's arity: the exact number of arguments with the name, or at
    /// least minus it when negative.
    arity: i32,
    flags: u8,
    pub(crate) run: Run,
}

impl Command {
    pub(crate) fn is_write(&self) -> bool {
        self.flags & WRITE != 0
    }

    pub(crate) fn denies_oom(&self) -> bool {
        self.flags & DENYOOM != 0
    }

    pub(crate) fn runs_in_multi(&self) -> bool {
        self.flags & NOQUEUE != 0
    }

    pub(crate) fn closes(&self) -> bool {
        self.flags & CLOSE != 0
    }
}

const fn command(name: &'static [u8], arity: i32, flags: u8, run: Run) -> Command {
    Command {
        name,
        arity,
        flags,
        run,
    }
}

const W: u8 = WRITE;
const WD: u8 = WRITE | DENYOOM;

static COMMANDS: &[Command] = &[
    // Strings.
    command(b"get", 2, 0, strings::get),
    command(b"set", -3, WD, strings::set),
    command(b"setnx", 3, WD, strings::setnx),
    command(b"getset", 3, WD, strings::getset),
    command(b"mget", -2, 0, strings::mget),
    command(b"mset", -3, WD, strings::mset),
    command(b"append", 3, WD, strings::append),
    command(b"strlen", 2, 0, strings::strlen),
    command(b"incr", 2, WD, strings::incr),
    command(b"decr", 2, WD, strings::decr),
    command(b"incrby", 3, WD, strings::incrby),
    command(b"decrby", 3, WD, strings::decrby),
    // Keys.
    command(b"del", -2, W, keys::del),
    command(b"unlink", -2, W, keys::del),
    command(b"exists", -2, 0, keys::exists),
    command(b"type", 2, 0, keys::type_of),
    command(b"keys", 2, 0, keys::keys),
    command(b"scan", -2, 0, keys::scan),
    command(b"expire", -3, W, keys::expire),
    command(b"pexpire", -3, W, keys::pexpire),
    command(b"expireat", -3, W, keys::expireat),
    command(b"pexpireat", -3, W, keys::pexpireat),
    command(b"ttl", 2, 0, keys::ttl),
    command(b"pttl", 2, 0, keys::pttl),
    command(b"persist", 2, W, keys::persist),
    command(b"dbsize", 1, 0, keys::dbsize),
    command(b"flushdb", -1, W, keys::flush),
    command(b"flushall", -1, W, keys::flush),
    command(b"select", 2, 0, keys::select),
    // Lists.
    command(b"lpush", -3, WD, lists::lpush),
    command(b"rpush", -3, WD, lists::rpush),
    command(b"lpop", -2, W, lists::lpop),
    command(b"rpop", -2, W, lists::rpop),
    command(b"llen", 2, 0, lists::llen),
    command(b"lrange", 4, 0, lists::lrange),
    // Sets.
    command(b"sadd", -3, WD, sets::sadd),
    command(b"srem", -3, W, sets::srem),
    command(b"smembers", 2, 0, sets::smembers),
    command(b"sismember", 3, 0, sets::sismember),
    command(b"scard", 2, 0, sets::scard),
    command(b"spop", -2, W, sets::spop),
    // Hashes.
    command(b"hset", -4, WD, hashes::hset),
    command(b"hmset", -4, WD, hashes::hmset),
    command(b"hget", 3, 0, hashes::hget),
    command(b"hmget", -3, 0, hashes::hmget),
    command(b"hdel", -3, W, hashes::hdel),
    command(b"hgetall", 2, 0, hashes::hgetall),
    command(b"hlen", 2, 0, hashes::hlen),
    command(b"hexists", 3, 0, hashes::hexists),
    // Sorted sets.
    command(b"zadd", -4, WD, zsets::zadd),
    command(b"zrange", -4, 0, zsets::zrange),
    command(b"zpopmin", -2, W, zsets::zpopmin),
    command(b"zcard", 2, 0, zsets::zcard),
    command(b"zscore", 3, 0, zsets::zscore),
    command(b"zrem", -3, W, zsets::zrem),
    // Transactions.
    command(b"multi", 1, NOQUEUE, server::multi),
    command(b"exec", 1, NOQUEUE, server::exec),
    command(b"discard", 1, NOQUEUE, server::discard),
    // Connection and server.
    command(b"ping", -1, 0, server::ping),
    command(b"echo", 2, 0, server::echo),
    command(b"quit", -1, NOQUEUE | CLOSE, server::quit),
    command(b"hello", -1, NOQUEUE, server::hello),
    command(b"client", -2, 0, server::client),
    command(b"command", -1, 0, server::command),
    command(b"config", -2, 0, server::config),
    command(b"info", -1, 0, server::info),
];

/// The number of commands, for COMMAND COUNT.
pub(crate) fn count() -> usize {
    COMMANDS.len()
}

/// The command `args` names, with its arity checked; otherwise Redis's
/// error.
pub(crate) fn lookup(args: &[Vec<u8>]) -> Result<&'static Command, Vec<u8>> {
    let Some((name, rest)) = args.split_first() else {
        return Err(unknown_command(b"", &[]));
    };
    let Some(command) = COMMANDS
        .iter()
        .find(|command| name.eq_ignore_ascii_case(command.name))
    else {
        return Err(unknown_command(name, rest));
    };
    let arity = command.arity;
    let count = args.len() as i64;
    let fits = if arity >= 0 {
        count == i64::from(arity)
    } else {
        count >= -i64::from(arity)
    };
    if !fits {
        return Err(wrong_arity(command.name));
    }
    Ok(command)
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
    message
}

/// `%.Ns` of `bytes`: up to its first NUL, at most `max` bytes.
pub(crate) fn c_string(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(bytes.len())
        .min(max);
    bytes.get(..end).unwrap_or_default()
}

/// `ERR wrong number of arguments for 'NAME' command` (`client|setname`
/// for a subcommand).
pub(crate) fn wrong_arity(name: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(b"ERR wrong number of arguments for '");
    message.extend_from_slice(name);
    message.extend_from_slice(b"' command");
    message
}

/// An integer argument, or Redis's error replied.
pub(crate) fn integer_arg(ctx: &mut Ctx, arg: &[u8]) -> Option<i64> {
    let value = int::parse_i64(arg);
    if value.is_none() {
        ctx.reply.error(reply::NOT_INTEGER);
    }
    value
}

/// A count that must not be negative (LPOP, SPOP, ZPOPMIN...), read as
/// Redis's `getPositiveLongFromObjectOrReply`: one error for both a bad
/// number and a negative one.
pub(crate) fn count_arg(ctx: &mut Ctx, arg: &[u8]) -> Option<usize> {
    let count = int::parse_i64(arg).and_then(|value| usize::try_from(value).ok());
    if count.is_none() {
        ctx.reply
            .error(b"ERR value is out of range, must be positive");
    }
    count
}

/// The optional count after the key (LPOP, SPOP, ZPOPMIN): `Err` with
/// Redis's error replied when it is not a count.
pub(crate) fn optional_count(ctx: &mut Ctx, args: &[Vec<u8>]) -> Result<Option<usize>, ()> {
    match args.get(2) {
        Some(arg) => count_arg(ctx, arg).map(Some).ok_or(()),
        None => Ok(None),
    }
}

/// LLEN, SCARD, HLEN, ZCARD: the number of elements of the collection at
/// `args[1]` (0 when missing).
pub(crate) fn length(ctx: &mut Ctx, args: &[Vec<u8>], is_kind: fn(&Value) -> bool) {
    if let Ok(slot) = typed(ctx, &args[1], is_kind) {
        let len = slot.map_or(0, |slot| slot.value.len());
        ctx.reply.integer(len as i64);
    }
}

/// SISMEMBER, HEXISTS: whether the collection at `args[1]` has `args[2]`.
pub(crate) fn has(
    ctx: &mut Ctx,
    args: &[Vec<u8>],
    is_kind: fn(&Value) -> bool,
    contains: fn(&Value, &[u8]) -> bool,
) {
    if let Ok(slot) = typed(ctx, &args[1], is_kind) {
        let found = slot.is_some_and(|slot| contains(&slot.value, &args[2]));
        ctx.reply.integer(i64::from(found));
    }
}

/// SREM, HDEL, ZREM: removes the elements `args[2..]` from the collection
/// at `args[1]` (deleting the key once empty); how many were there.
pub(crate) fn remove_elements(
    ctx: &mut Ctx,
    args: &[Vec<u8>],
    is_kind: fn(&Value) -> bool,
    remove: fn(&mut Value, &[u8]) -> bool,
) {
    let key = &args[1];
    let removed = match typed_mut(ctx, key, is_kind) {
        Err(()) => return,
        Ok(None) => 0,
        Ok(Some(value)) => args[2..]
            .iter()
            .filter(|element| remove(value, element))
            .count(),
    };
    ctx.db.remove_if_empty(key);
    ctx.reply.integer(removed as i64);
}

/// LPOP, SPOP, ZPOPMIN: takes up to the count at `args[2]` (one without
/// it) with `pop` from the collection at `args[1]`, deleting the key once
/// empty. `Err` once an error is replied (a bad count, another type);
/// otherwise the count and what was popped, `None` if the key is missing.
/// A count of 0 leaves the key untouched, so nothing is logged.
pub(crate) fn pop_elements<T>(
    ctx: &mut Ctx,
    args: &[Vec<u8>],
    is_kind: fn(&Value) -> bool,
    pop: impl FnOnce(&mut Value, usize, &mut dyn Clock) -> Vec<T>,
) -> Result<(Option<usize>, Option<Vec<T>>), ()> {
    let count = optional_count(ctx, args)?;
    let key = &args[1];
    if typed(ctx, key, is_kind)?.is_none() {
        return Ok((count, None));
    }
    if count == Some(0) {
        return Ok((count, Some(Vec::new())));
    }
    let Ctx { db, clock, .. } = ctx;
    let popped = db.get_mut(key, clock).map(|value| {
        let take = count.unwrap_or(1).min(value.len());
        pop(value, take, clock)
    });
    ctx.db.remove_if_empty(key);
    Ok((count, popped))
}

/// The live slot of `key` if it holds the kind of value `is_kind`
/// accepts; `Err` (WRONGTYPE replied) if it holds another.
pub(crate) fn typed<'a>(
    ctx: &'a mut Ctx,
    key: &[u8],
    is_kind: fn(&Value) -> bool,
) -> Result<Option<&'a Slot>, ()> {
    let Ctx {
        db, clock, reply, ..
    } = ctx;
    match db.get(key, clock) {
        Some(slot) if !is_kind(&slot.value) => {
            reply.error(reply::WRONGTYPE);
            Err(())
        }
        found => Ok(found),
    }
}

/// Like [`typed`], for changing the value in place (a change).
pub(crate) fn typed_mut<'a>(
    ctx: &'a mut Ctx,
    key: &[u8],
    is_kind: fn(&Value) -> bool,
) -> Result<Option<&'a mut Value>, ()> {
    if typed(ctx, key, is_kind)?.is_none() {
        return Ok(None);
    }
    let Ctx { db, clock, .. } = ctx;
    Ok(db.get_mut(key, clock))
}

/// The value of `key` to change in place, made from `empty` if the key is
/// missing; `Err` (WRONGTYPE replied) if it holds another type.
pub(crate) fn value_or_insert<'a>(
    ctx: &'a mut Ctx,
    key: &[u8],
    is_kind: fn(&Value) -> bool,
    empty: fn() -> Value,
) -> Result<&'a mut Value, ()> {
    let missing = typed(ctx, key, is_kind)?.is_none();
    if missing {
        ctx.db.set(key, empty(), false);
    }
    let Ctx { db, clock, .. } = ctx;
    db.get_mut(key, clock).ok_or(())
}

/// Resolves Redis's LRANGE/ZRANGE indexes (negative from the end) against
/// `len`: the inclusive range, or `None` when it is empty.
pub(crate) fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len && stop >= 0).then_some((start as usize, stop as usize))
}
