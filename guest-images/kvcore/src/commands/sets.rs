//! Set commands.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::mem;

use super::{has, length, pop_elements, remove_elements, value_or_insert};
use crate::db;
use crate::kv::Ctx;
use crate::reply::SYNTAX;
use crate::value::Value;

fn is_set(value: &Value) -> bool {
    matches!(value, Value::Set(_))
}

pub(super) fn sadd(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let (key, members) = args.split_at_mut(2);
    let Ok(Value::Set(set)) = value_or_insert(ctx, &key[1], is_set, || Value::Set(BTreeSet::new()))
    else {
        return;
    };
    let mut added = 0;
    for member in members {
        if set.insert(mem::take(member)) {
            added += 1;
        }
    }
    ctx.reply.integer(added as i64);
}

pub(super) fn srem(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    remove_elements(ctx, args, is_set, |value, member| match value {
        Value::Set(set) => set.remove(member),
        _ => false,
    });
}

pub(super) fn smembers(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Ctx {
        db, clock, reply, ..
    } = ctx;
    match db.get(&args[1], clock).map(|slot| &slot.value) {
        None => reply.set(0),
        Some(Value::Set(set)) => {
            reply.set(set.len());
            for member in set {
                reply.bulk(member);
            }
        }
        Some(_) => reply.error(crate::reply::WRONGTYPE),
    }
}

pub(super) fn sismember(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    has(ctx, args, is_set, |value, member| match value {
        Value::Set(set) => set.contains(member),
        _ => false,
    });
}

pub(super) fn scard(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    length(ctx, args, is_set);
}

/// SPOP key [count]. Which members go is pseudo-random, drawn from the
/// time, the key and the set's size: all three are the same when the log
/// replays the command, so the replay pops the same members.
pub(super) fn spop(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if args.len() > 3 {
        ctx.reply.error(SYNTAX);
        return;
    }
    let key = &args[1];
    let Ok((count, popped)) = pop_elements(ctx, args, is_set, |value, take, clock| {
        let Value::Set(set) = value else {
            return Vec::new();
        };
        let mut seed = db::hash(key) ^ clock.now_ms().rotate_left(17) ^ (set.len() as u64) << 32;
        let mut popped = Vec::with_capacity(take);
        for _ in 0..take {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let index = (seed % set.len() as u64) as usize;
            if let Some(member) = set.iter().nth(index).cloned() {
                set.remove(&member);
                popped.push(member);
            }
        }
        popped
    }) else {
        return;
    };
    match (count, popped) {
        (None, None) => ctx.reply.null(),
        (count, popped) => {
            // A missing key with a count replies as an empty pop.
            let popped = popped.unwrap_or_default();
            if count.is_some() {
                ctx.reply.set(popped.len());
            }
            for member in &popped {
                ctx.reply.bulk(member);
            }
        }
    }
}
