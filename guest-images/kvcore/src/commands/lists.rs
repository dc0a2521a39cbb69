//! List commands.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::mem;

use super::{integer_arg, length, pop_elements, range, value_or_insert};
use crate::kv::Ctx;
use crate::value::Value;

fn is_list(value: &Value) -> bool {
    matches!(value, Value::List(_))
}

#[derive(Clone, Copy)]
enum End {
    Head,
    Tail,
}

pub(super) fn lpush(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    push(ctx, args, End::Head);
}

pub(super) fn rpush(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    push(ctx, args, End::Tail);
}

fn push(ctx: &mut Ctx, args: &mut [Vec<u8>], end: End) {
    let (key, values) = args.split_at_mut(2);
    let Ok(Value::List(list)) =
        value_or_insert(ctx, &key[1], is_list, || Value::List(VecDeque::new()))
    else {
        return;
    };
    for value in values {
        let value = mem::take(value);
        match end {
            End::Head => list.push_front(value),
            End::Tail => list.push_back(value),
        }
    }
    let len = list.len();
    ctx.reply.integer(len as i64);
}

pub(super) fn lpop(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    pop(ctx, args, End::Head);
}

pub(super) fn rpop(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    pop(ctx, args, End::Tail);
}

/// LPOP and RPOP, as Redis 7's `popGenericCommand`.
fn pop(ctx: &mut Ctx, args: &mut [Vec<u8>], end: End) {
    if args.len() > 3 {
        ctx.reply
            .error(&super::wrong_arity(if matches!(end, End::Head) {
                b"lpop"
            } else {
                b"rpop"
            }));
        return;
    }
    let Ok((count, popped)) = pop_elements(ctx, args, is_list, |value, take, _| {
        let Value::List(list) = value else {
            return Vec::new();
        };
        (0..take)
            .filter_map(|_| match end {
                End::Head => list.pop_front(),
                End::Tail => list.pop_back(),
            })
            .collect()
    }) else {
        return;
    };
    let Some(popped) = popped else {
        if count.is_some() {
            ctx.reply.null_array();
        } else {
            ctx.reply.null();
        }
        return;
    };
    if count.is_some() {
        ctx.reply.array(popped.len());
    }
    for value in &popped {
        ctx.reply.bulk(value);
    }
}

pub(super) fn llen(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    length(ctx, args, is_list);
}

pub(super) fn lrange(ctx: &mut Ctx, args: &mut [Vec<u8>]) {
    let Some(start) = integer_arg(ctx, &args[2]) else {
        return;
    };
    let Some(stop) = integer_arg(ctx, &args[3]) else {
        return;
    };
    let Ctx {
        db, clock, reply, ..
    } = ctx;
    match db.get(&args[1], clock).map(|slot| &slot.value) {
        None => reply.array(0),
        Some(Value::List(list)) => match range(start, stop, list.len()) {
            None => reply.array(0),
            Some((first, last)) => {
                reply.array(last - first + 1);
                for value in list.range(first..=last) {
                    reply.bulk(value);
                }
            }
        },
        Some(_) => reply.error(crate::reply::WRONGTYPE),
    }
}
