//! Sorted-set commands.

use alloc::vec::Vec;
use core::mem;

use super::{integer_arg, length, pop_elements, range, remove_elements, typed, value_or_insert};
use crate::kv::Ctx;
use crate::reply::{NOT_FLOAT, Protocol, SYNTAX, WRONGTYPE};
use crate::score::Score;
use crate::value::{Value, ZSet};

fn is_zset(value: &Value) -> bool {
    matches!(value, Value::ZSet(_))
}

#[derive(Default)]
struct AddOptions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// ZADD, as Redis 7's `zaddGenericCommand` (without INCR, which needs
/// float addition).
pub(super) fn zadd(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let mut options = AddOptions::default();
    let mut first = 2;
    while let Some(option) = args.get(first) {
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        if is(b"nx") {
            options.nx = true;
        } else if is(b"xx") {
            options.xx = true;
        } else if is(b"ch") {
            options.ch = true;
        } else if is(b"incr") {
            options.incr = true;
        } else if is(b"gt") {
            options.gt = true;
        } else if is(b"lt") {
            options.lt = true;
        } else {
            break;
        }
        first += 1;
    }
    let pairs = args.len() - first;
    if pairs % 2 == 1 || pairs == 0 {
        ctx.reply.error(SYNTAX);
        return;
    }
    if options.nx && options.xx {
        ctx.reply
            .error(b"ERR XX and NX options at the same time are not compatible");
        return;
    }
    if (options.gt || options.lt) && options.nx || options.gt && options.lt {
        ctx.reply
            .error(b"ERR GT, LT, and/or NX options at the same time are not compatible");
        return;
    }
    if options.incr {
        ctx.reply
            .error(b"ERR ZADD INCR is not supported by this server");
        return;
    }
    let mut scores = Vec::with_capacity(pairs / 2);
    for pair in args[first..].chunks_exact(2) {
        let Some(score) = Score::parse(&pair[0]) else {
            ctx.reply.error(NOT_FLOAT);
            return;
        };
        scores.push(score);
    }
    let key = args[1].clone();
    match typed(ctx, &key, is_zset) {
        Err(()) => return,
        Ok(None) if options.xx => {
            ctx.reply.integer(0);
            return;
        }
        Ok(_) => {}
    }
    let Ok(Value::ZSet(zset)) =
        value_or_insert(ctx, &key, is_zset, || Value::ZSet(ZSet::default()))
    else {
        return;
    };
    let (mut added, mut updated) = (0, 0);
    for (pair, score) in args[first..].chunks_exact_mut(2).zip(scores) {
        let member = mem::take(&mut pair[1]);
        match zset.score(&member) {
            Some(current) => {
                let skip =
                    options.nx || options.lt && score >= current || options.gt && score <= current;
                if !skip && score.to_bits() != current.to_bits() {
                    zset.insert(member, score);
                    updated += 1;
                }
            }
            None if !options.xx => {
                zset.insert(member, score);
                added += 1;
            }
            None => {}
        }
    }
    ctx.db.remove_if_empty(&key);
    ctx.reply
        .integer(if options.ch { added + updated } else { added });
}

/// ZRANGE key start stop [REV] [WITHSCORES], by rank.
pub(super) fn zrange(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let mut with_scores = false;
    let mut reverse = false;
    for option in &args[4..] {
        if option.eq_ignore_ascii_case(b"withscores") {
            with_scores = true;
        } else if option.eq_ignore_ascii_case(b"rev") && !reverse {
            reverse = true;
        } else {
            ctx.reply.error(SYNTAX);
            return;
        }
    }
    let Some(start) = integer_arg(ctx, &args[2]) else {
        return;
    };
    let Some(stop) = integer_arg(ctx, &args[3]) else {
        return;
    };
    let Ctx {
        db, clock, reply, ..
    } = ctx;
    let zset = match db.get(&args[1], clock).map(|slot| &slot.value) {
        None => {
            reply.array(0);
            return;
        }
        Some(Value::ZSet(zset)) => zset,
        Some(_) => {
            reply.error(WRONGTYPE);
            return;
        }
    };
    let Some((first, last)) = range(start, stop, zset.len()) else {
        reply.array(0);
        return;
    };
    let count = last - first + 1;
    let nested = with_scores && reply.proto() == Protocol::Resp3;
    reply.array(if with_scores && !nested {
        count * 2
    } else {
        count
    });
    let emit = |reply: &mut crate::reply::Reply, (member, score): (&[u8], Score)| {
        if nested {
            reply.array(2);
        }
        reply.bulk(member);
        if with_scores {
            reply.double(score);
        }
    };
    if reverse {
        for element in zset.iter().rev().skip(first).take(count) {
            emit(reply, element);
        }
    } else {
        for element in zset.iter().skip(first).take(count) {
            emit(reply, element);
        }
    }
}

/// ZPOPMIN key [count], as Redis 7's `zpopMinMaxCommand`.
pub(super) fn zpopmin(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if args.len() > 3 {
        ctx.reply.error(SYNTAX);
        return;
    }
    let Ok((count, popped)) = pop_elements(ctx, args, is_zset, |value, take, _| {
        let Value::ZSet(zset) = value else {
            return Vec::new();
        };
        (0..take).filter_map(|_| zset.pop_min()).collect()
    }) else {
        return;
    };
    // A missing key replies as an empty pop.
    let popped = popped.unwrap_or_default();
    let nested = ctx.reply.proto() == Protocol::Resp3 && count.is_some();
    ctx.reply.array(if nested {
        popped.len()
    } else {
        popped.len() * 2
    });
    for (member, score) in &popped {
        if nested {
            ctx.reply.array(2);
        }
        ctx.reply.bulk(member);
        ctx.reply.double(*score);
    }
}

pub(super) fn zcard(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    length(ctx, args, is_zset);
}

pub(super) fn zscore(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if let Ok(slot) = typed(ctx, &args[1], is_zset) {
        let score = match slot.map(|slot| &slot.value) {
            Some(Value::ZSet(zset)) => zset.score(&args[2]),
            _ => None,
        };
        match score {
            Some(score) => ctx.reply.double(score),
            None => ctx.reply.null(),
        }
    }
}

pub(super) fn zrem(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    remove_elements(ctx, args, is_zset, |value, member| match value {
        Value::ZSet(zset) => zset.remove(member),
        _ => false,
    });
}
