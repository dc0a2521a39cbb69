//! String commands.

use alloc::vec::Vec;
use core::mem;

use super::{integer_arg, typed, typed_mut};
use crate::db::Clock;
use crate::int;
use crate::kv::Ctx;
use crate::reply::{self, SYNTAX};
use crate::value::Value;

fn is_string(value: &Value) -> bool {
    matches!(value, Value::Str(_))
}

/// The string at `key`: `Err` (WRONGTYPE replied) for another type.
fn string<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a [u8]>, ()> {
    Ok(
        typed(ctx, key, is_string)?.and_then(|slot| match &slot.value {
            Value::Str(bytes) => Some(bytes.as_slice()),
            _ => None,
        }),
    )
}

pub(super) fn get(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Ctx {
        db,
        clock,
        reply,
        stats,
        ..
    } = ctx;
    match db.get(&args[1], clock).map(|slot| &slot.value) {
        Some(Value::Str(value)) => {
            stats.hits += 1;
            reply.bulk(value);
        }
        Some(_) => reply.error(reply::WRONGTYPE),
        None => {
            stats.misses += 1;
            reply.null();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    Missing,
    Existing,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// The key's deadline goes.
    Clear,
    Keep,
    /// Relative or absolute, in milliseconds.
    In(i64),
    At(i64),
}

struct SetOptions {
    condition: Condition,
    get: bool,
    expiry: Expiry,
}

/// SET's options as Redis's `parseExtendedStringArgumentsOrReply` reads
/// them; `None` with the error replied.
fn set_options(ctx: &mut Ctx, options: &[Vec<u8>]) -> Option<SetOptions> {
    let mut parsed = SetOptions {
        condition: Condition::Always,
        get: false,
        expiry: Expiry::Clear,
    };
    let mut index = 0;
    while let Some(option) = options.get(index) {
        let next = options.get(index + 1);
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        let no_expiry = parsed.expiry == Expiry::Clear;
        if is(b"nx") && parsed.condition == Condition::Always {
            parsed.condition = Condition::Missing;
        } else if is(b"xx") && parsed.condition == Condition::Always {
            parsed.condition = Condition::Existing;
        } else if is(b"get") && !parsed.get {
            parsed.get = true;
        } else if is(b"keepttl") && no_expiry {
            parsed.expiry = Expiry::Keep;
        } else if (is(b"ex") || is(b"px") || is(b"exat") || is(b"pxat"))
            && no_expiry
            && let Some(value) = next
        {
            let seconds = is(b"ex") || is(b"exat");
            let absolute = is(b"exat") || is(b"pxat");
            let amount = integer_arg(ctx, value)?;
            let ms = if seconds {
                amount.checked_mul(1000).filter(|_| amount > 0)
            } else {
                Some(amount).filter(|&ms| ms > 0)
            };
            let Some(ms) = ms else {
                ctx.reply.error(b"ERR invalid expire time in 'set' command");
                return None;
            };
            parsed.expiry = if absolute {
                Expiry::At(ms)
            } else {
                Expiry::In(ms)
            };
            index += 1;
        } else {
            ctx.reply.error(SYNTAX);
            return None;
        }
        index += 1;
    }
    Some(parsed)
}

pub(super) fn set(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Some(options) = set_options(ctx, &args[3..]) else {
        return;
    };
    let deadline = match options.expiry {
        Expiry::In(ms) => match ms.checked_add(ctx.clock.now_ms() as i64) {
            Some(deadline) => Some(deadline),
            None => {
                ctx.reply.error(b"ERR invalid expire time in 'set' command");
                return;
            }
        },
        Expiry::At(ms) => Some(ms),
        Expiry::Clear | Expiry::Keep => None,
    };
    let key = mem::take(&mut args[1]);
    let old = if options.get {
        match string(ctx, &key) {
            Ok(old) => Some(old.map(<[u8]>::to_vec)),
            Err(()) => return,
        }
    } else {
        None
    };
    let exists = ctx.db.purge(&key, &mut ctx.clock);
    let allowed = match options.condition {
        Condition::Always => true,
        Condition::Missing => !exists,
        Condition::Existing => exists,
    };
    if allowed {
        let value = mem::take(&mut args[2]);
        ctx.db
            .set(&key, Value::Str(value), options.expiry == Expiry::Keep);
        if let Some(deadline) = deadline {
            expire_at(ctx, &key, deadline);
        }
    }
    match old {
        Some(Some(old)) => ctx.reply.bulk(&old),
        Some(None) => ctx.reply.null(),
        None if allowed => ctx.reply.ok(),
        None => ctx.reply.null(),
    }
}

/// Sets `key`'s deadline; one already past deletes it.
pub(super) fn expire_at(ctx: &mut Ctx, key: &[u8], deadline: i64) {
    if deadline <= ctx.clock.now_ms() as i64 {
        ctx.db.remove(key);
    } else {
        ctx.db.set_expiry(key, Some(deadline as u64));
    }
}

pub(super) fn setnx(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if ctx.db.purge(&args[1], &mut ctx.clock) {
        ctx.reply.integer(0);
        return;
    }
    let value = mem::take(&mut args[2]);
    ctx.db.set(&args[1], Value::Str(value), false);
    ctx.reply.integer(1);
}

pub(super) fn getset(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let old = match string(ctx, &args[1]) {
        Ok(old) => old.map(<[u8]>::to_vec),
        Err(()) => return,
    };
    let value = mem::take(&mut args[2]);
    ctx.db.set(&args[1], Value::Str(value), false);
    match old {
        Some(old) => ctx.reply.bulk(&old),
        None => ctx.reply.null(),
    }
}

pub(super) fn mget(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    ctx.reply.array(args.len() - 1);
    for key in &args[1..] {
        match ctx.db.get(key, &mut ctx.clock).map(|slot| &slot.value) {
            Some(Value::Str(value)) => ctx.reply.bulk(value),
            _ => ctx.reply.null(),
        }
    }
}

pub(super) fn mset(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if args.len().is_multiple_of(2) {
        ctx.reply.error(&super::wrong_arity(b"mset"));
        return;
    }
    for pair in args[1..].chunks_exact_mut(2) {
        let value = mem::take(&mut pair[1]);
        ctx.db.set(&pair[0], Value::Str(value), false);
    }
    ctx.reply.ok();
}

pub(super) fn append(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let current = match string(ctx, &args[1]) {
        Ok(current) => current.map_or(0, <[u8]>::len),
        Err(()) => return,
    };
    if current.saturating_add(args[2].len()) > crate::MAX_BULK {
        ctx.reply
            .error(b"ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return;
    }
    let len = match ctx.db.get_mut(&args[1], &mut ctx.clock) {
        Some(Value::Str(value)) => {
            value.extend_from_slice(&args[2]);
            value.len()
        }
        _ => {
            let value = mem::take(&mut args[2]);
            let len = value.len();
            ctx.db.set(&args[1], Value::Str(value), false);
            len
        }
    };
    ctx.reply.integer(len as i64);
}

pub(super) fn strlen(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if let Ok(value) = string(ctx, &args[1]) {
        let len = value.map_or(0, <[u8]>::len);
        ctx.reply.integer(len as i64);
    }
}

pub(super) fn incr(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    add(ctx, &args[1], 1);
}

pub(super) fn decr(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    add(ctx, &args[1], -1);
}

pub(super) fn incrby(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if let Some(by) = integer_arg(ctx, &args[2]) {
        add(ctx, &args[1], by);
    }
}

pub(super) fn decrby(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Some(by) = integer_arg(ctx, &args[2]) else {
        return;
    };
    match by.checked_neg() {
        Some(by) => add(ctx, &args[1], by),
        None => ctx.reply.error(b"ERR decrement would overflow"),
    }
}

/// INCR and friends: the key's integer plus `by`, its deadline kept.
fn add(ctx: &mut Ctx, key: &[u8], by: i64) {
    let current = match string(ctx, key) {
        Err(()) => return,
        Ok(None) => 0,
        Ok(Some(text)) => match int::parse_i64(text) {
            Some(current) => current,
            None => {
                ctx.reply.error(reply::NOT_INTEGER);
                return;
            }
        },
    };
    let Some(next) = current.checked_add(by) else {
        ctx.reply
            .error(b"ERR increment or decrement would overflow");
        return;
    };
    let mut text = Vec::new();
    int::push_i64(&mut text, next);
    match typed_mut(ctx, key, is_string) {
        Ok(Some(Value::Str(value))) => *value = text,
        _ => ctx.db.set(key, Value::Str(text), false),
    }
    ctx.reply.integer(next);
}
