//! Hash commands.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::mem;

use super::{has, length, remove_elements, typed, value_or_insert, wrong_arity};
use crate::kv::Ctx;
use crate::value::Value;

fn is_hash(value: &Value) -> bool {
    matches!(value, Value::Hash(_))
}

/// Sets the field-value pairs after the key; how many fields are new.
/// `None` for an odd number of arguments (error replied).
fn set_fields(ctx: &mut Ctx, args: &mut [Vec<u8>], name: &[u8]) -> Option<usize> {
    if args.len() % 2 == 1 {
        ctx.reply.error(&wrong_arity(name));
        return None;
    }
    let (key, pairs) = args.split_at_mut(2);
    let Ok(Value::Hash(hash)) =
        value_or_insert(ctx, &key[1], is_hash, || Value::Hash(BTreeMap::new()))
    else {
        return None;
    };
    let mut added = 0;
    for pair in pairs.chunks_exact_mut(2) {
        let value = mem::take(&mut pair[1]);
        if hash.insert(mem::take(&mut pair[0]), value).is_none() {
            added += 1;
        }
    }
    Some(added)
}

pub(super) fn hset(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if let Some(added) = set_fields(ctx, args, b"hset") {
        ctx.reply.integer(added as i64);
    }
}

pub(super) fn hmset(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if set_fields(ctx, args, b"hmset").is_some() {
        ctx.reply.ok();
    }
}

pub(super) fn hget(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    if let Ok(slot) = typed(ctx, &args[1], is_hash) {
        let value = match slot.map(|slot| &slot.value) {
            Some(Value::Hash(hash)) => hash.get(&args[2]).cloned(),
            _ => None,
        };
        match value {
            Some(value) => ctx.reply.bulk(&value),
            None => ctx.reply.null(),
        }
    }
}

pub(super) fn hmget(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Ctx {
        db, clock, reply, ..
    } = ctx;
    let hash = match db.get(&args[1], clock).map(|slot| &slot.value) {
        Some(Value::Hash(hash)) => Some(hash),
        None => None,
        Some(_) => {
            reply.error(crate::reply::WRONGTYPE);
            return;
        }
    };
    reply.array(args.len() - 2);
    for field in &args[2..] {
        match hash.and_then(|hash| hash.get(field)) {
            Some(value) => reply.bulk(value),
            None => reply.null(),
        }
    }
}

pub(super) fn hdel(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    remove_elements(ctx, args, is_hash, |value, field| match value {
        Value::Hash(hash) => hash.remove(field).is_some(),
        _ => false,
    });
}

pub(super) fn hgetall(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Ctx {
        db, clock, reply, ..
    } = ctx;
    match db.get(&args[1], clock).map(|slot| &slot.value) {
        None => reply.map(0),
        Some(Value::Hash(hash)) => {
            reply.map(hash.len());
            for (field, value) in hash {
                reply.bulk(field);
                reply.bulk(value);
            }
        }
        Some(_) => reply.error(crate::reply::WRONGTYPE),
    }
}

pub(super) fn hlen(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    length(ctx, args, is_hash);
}

pub(super) fn hexists(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    has(ctx, args, is_hash, |value, field| match value {
        Value::Hash(hash) => hash.contains_key(field),
        _ => false,
    });
}
