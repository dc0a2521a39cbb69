//! Commands on keys whatever their type, and on the keyspace.

use alloc::vec::Vec;

use super::integer_arg;
use crate::db::Clock;
use crate::glob;
use crate::int;
use crate::kv::Ctx;
use crate::reply::SYNTAX;

pub(super) fn del(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let mut deleted = 0;
    for key in &args[1..] {
        if ctx.db.purge(key, &mut ctx.clock) {
            ctx.db.remove(key);
            deleted += 1;
        }
    }
    ctx.reply.integer(deleted);
}

pub(super) fn exists(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let count = args[1..]
        .iter()
        .filter(|key| ctx.db.contains(key, &mut ctx.clock))
        .count();
    ctx.reply.integer(count as i64);
}

pub(super) fn type_of(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let name = ctx
        .db
        .get(&args[1], &mut ctx.clock)
        .map_or(&b"none"[..], |slot| slot.value.type_name());
    ctx.reply.simple(name);
}

/// The live keys from cursor `from` matching `pattern` (and of `kind`),
/// until `count` buckets were taken: the keys and the next cursor.
fn collect(
    ctx: &mut Ctx,
    from: u64,
    count: usize,
    pattern: Option<&[u8]>,
    kind: Option<&[u8]>,
) -> (Vec<Vec<u8>>, u64) {
    // The time is read only if some key could have expired.
    let now = if ctx.db.expiring() > 0 {
        ctx.clock.now_ms()
    } else {
        0
    };
    // As Redis, `*` is every key, the empty one too.
    let pattern = pattern.filter(|pattern| *pattern != b"*");
    let mut keys = Vec::new();
    let mut visited = 0;
    let next = ctx.db.walk(from, |slot| {
        visited += 1;
        let live = slot.expires.is_none_or(|deadline| deadline > now);
        let wanted = pattern.is_none_or(|pattern| glob::matches(pattern, &slot.key, false))
            && kind.is_none_or(|kind| kind.eq_ignore_ascii_case(slot.value.type_name()));
        if live && wanted {
            keys.push(slot.key.clone());
        }
        visited >= count
    });
    (keys, next)
}

pub(super) fn keys(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let (keys, _) = collect(ctx, 0, usize::MAX, Some(&args[1]), None);
    ctx.reply.array(keys.len());
    for key in &keys {
        ctx.reply.bulk(key);
    }
}

/// A cursor as Redis's `strtoul` reads it (digits, an optional `+`).
fn parse_cursor(text: &[u8]) -> Option<u64> {
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

pub(super) fn scan(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Some(cursor) = parse_cursor(&args[1]) else {
        ctx.reply.error(b"ERR invalid cursor");
        return;
    };
    let mut count = 10;
    let mut pattern = None;
    let mut kind = None;
    let mut options = args[2..].chunks(2);
    for option in options.by_ref() {
        let [name, value] = option else {
            ctx.reply.error(SYNTAX);
            return;
        };
        if name.eq_ignore_ascii_case(b"count") {
            let Some(wanted) = integer_arg(ctx, value) else {
                return;
            };
            if wanted < 1 {
                ctx.reply.error(SYNTAX);
                return;
            }
            count = wanted as usize;
        } else if name.eq_ignore_ascii_case(b"match") {
            pattern = Some(value.clone());
        } else if name.eq_ignore_ascii_case(b"type") {
            kind = Some(value.clone());
        } else {
            ctx.reply.error(SYNTAX);
            return;
        }
    }
    let (keys, next) = collect(ctx, cursor, count, pattern.as_deref(), kind.as_deref());
    ctx.reply.array(2);
    let mut text = Vec::new();
    int::push_u64(&mut text, next);
    ctx.reply.bulk(&text);
    ctx.reply.array(keys.len());
    for key in &keys {
        ctx.reply.bulk(key);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Milliseconds,
}

pub(super) fn expire(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    set_expiry(ctx, args, b"expire", Unit::Seconds, false);
}

pub(super) fn pexpire(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    set_expiry(ctx, args, b"pexpire", Unit::Milliseconds, false);
}

pub(super) fn expireat(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    set_expiry(ctx, args, b"expireat", Unit::Seconds, true);
}

pub(super) fn pexpireat(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    set_expiry(ctx, args, b"pexpireat", Unit::Milliseconds, true);
}

/// EXPIRE's options.
#[derive(Default)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn conditions(ctx: &mut Ctx, options: &[Vec<u8>]) -> Option<Conditions> {
    let mut parsed = Conditions::default();
    for option in options {
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        if is(b"nx") {
            parsed.nx = true;
        } else if is(b"xx") {
            parsed.xx = true;
        } else if is(b"gt") {
            parsed.gt = true;
        } else if is(b"lt") {
            parsed.lt = true;
        } else {
            let mut message = b"ERR Unsupported option ".to_vec();
            message.extend_from_slice(option);
            ctx.reply.error(&message);
            return None;
        }
    }
    if parsed.nx && (parsed.xx || parsed.gt || parsed.lt) {
        ctx.reply
            .error(b"ERR NX and XX, GT or LT options at the same time are not compatible");
        return None;
    }
    if parsed.gt && parsed.lt {
        ctx.reply
            .error(b"ERR GT and LT options at the same time are not compatible");
        return None;
    }
    Some(parsed)
}

/// The EXPIRE family, as Redis 7's `expireGenericCommand`.
fn set_expiry(ctx: &mut Ctx, args: &[Vec<u8>], name: &[u8], unit: Unit, absolute: bool) {
    let Some(conditions) = conditions(ctx, &args[3..]) else {
        return;
    };
    let Some(amount) = integer_arg(ctx, &args[2]) else {
        return;
    };
    let invalid = |ctx: &mut Ctx| {
        let mut message = b"ERR invalid expire time in '".to_vec();
        message.extend_from_slice(name);
        message.extend_from_slice(b"' command");
        ctx.reply.error(&message);
    };
    let ms = match unit {
        Unit::Seconds => amount.checked_mul(1000),
        Unit::Milliseconds => Some(amount),
    };
    let base = if absolute {
        0
    } else {
        ctx.clock.now_ms() as i64
    };
    let Some(deadline) = ms.and_then(|ms| ms.checked_add(base)) else {
        invalid(ctx);
        return;
    };
    let key = &args[1];
    let Some(current) = ctx.db.get(key, &mut ctx.clock).map(|slot| slot.expires) else {
        ctx.reply.integer(0);
        return;
    };
    let current = current.map(|deadline| deadline as i64);
    let refused = (conditions.nx && current.is_some())
        || (conditions.xx && current.is_none())
        || (conditions.gt && current.is_none_or(|current| deadline <= current))
        || (conditions.lt && current.is_some_and(|current| deadline >= current));
    if refused {
        ctx.reply.integer(0);
        return;
    }
    super::strings::expire_at(ctx, key, deadline);
    ctx.reply.integer(1);
}

pub(super) fn ttl(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    time_to_live(ctx, &args[1], Unit::Seconds);
}

pub(super) fn pttl(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    time_to_live(ctx, &args[1], Unit::Milliseconds);
}

fn time_to_live(ctx: &mut Ctx, key: &[u8], unit: Unit) {
    let Some(deadline) = ctx.db.get(key, &mut ctx.clock).map(|slot| slot.expires) else {
        ctx.reply.integer(-2);
        return;
    };
    let Some(deadline) = deadline else {
        ctx.reply.integer(-1);
        return;
    };
    let left = deadline.saturating_sub(ctx.clock.now_ms()) as i64;
    ctx.reply.integer(match unit {
        Unit::Milliseconds => left,
        Unit::Seconds => (left + 500) / 1000,
    });
}

pub(super) fn persist(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let has_deadline = ctx
        .db
        .get(&args[1], &mut ctx.clock)
        .is_some_and(|slot| slot.expires.is_some());
    if has_deadline {
        ctx.db.set_expiry(&args[1], None);
    }
    ctx.reply.integer(i64::from(has_deadline));
}

pub(super) fn dbsize(ctx: &mut Ctx, _args: &mut [Vec<u8>]) {
    let len = ctx.db.live_len(&mut ctx.clock);
    ctx.reply.integer(len as i64);
}

pub(super) fn flush(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let mode_ok = match &args[1..] {
        [] => true,
        [mode] => mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync"),
        _ => false,
    };
    if !mode_ok {
        ctx.reply.error(SYNTAX);
        return;
    }
    ctx.db.clear();
    ctx.reply.ok();
}

pub(super) fn select(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Some(index) = integer_arg(ctx, &args[1]) else {
        return;
    };
    if index == 0 {
        ctx.reply.ok();
    } else {
        ctx.reply.error(b"ERR DB index is out of range");
    }
}
