//! The logic of ftvm's Redis-compatible key-value guest (`kvstore`):
//! RESP2 and RESP3, the commands and data types, expiry, the write-ahead
//! log on a block device and its compaction.
//!
//! The crate is pure: the guest kernel owns the sockets, the clock and the
//! disk. It feeds received bytes to a [`Connection`], which runs requests
//! against the [`Kv`] store through a [`Host`] (the time, memory, and the
//! log: a write command's entry is checked against the disk before it
//! runs and handed to the host to log after), and sends each [`Outcome`]'s
//! reply once what it logged is flushed. The [`journal`] keeps that log
//! on a [`journal::Disk`].
//!
//! It runs inside guests, whose code must not reach `core::fmt`, core's
//! string searching or float arithmetic: their precompiled code uses SIMD
//! that KVM's instruction emulator cannot run (docs/DESIGN.md §1). So nothing
//! here formats, derives `Debug` outside tests or searches `str`, integers
//! and doubles are printed and parsed by hand (`int`, `score`), and no
//! input, however hostile, makes it panic.
#![no_std]
// `Debug` is `core::fmt`; guest code must not reach it.
#![allow(missing_debug_implementations)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod commands;
mod connection;
mod db;
mod glob;
mod inline;
mod int;
pub mod journal;
mod kv;
pub mod log;
mod reply;
mod resp;
mod score;
#[cfg(test)]
mod tests;
mod value;

pub use connection::{Connection, Request};
pub use kv::{Host, Kv, MAX_TRANSACTION, Memory, Outcome, Refusal, Session, Status};
pub use reply::Protocol;

/// The largest request accepted, in bytes: 1 MiB plus 4 KiB, so that a
/// value of 1 MiB fits with its key and framing. It bounds a multibulk
/// request in total (header lines, bulk strings and their `\r\n`s); a
/// larger one is refused with Redis's protocol error (`invalid multibulk
/// length` when the argument count alone cannot fit, `invalid bulk
/// length`) and the connection is closed.
pub const MAX_REQUEST: usize = (1 << 20) + 4096;

/// The longest bulk string and string value (Redis's
/// `proto-max-bulk-len`): as long as a request can carry. APPEND past it
/// is refused.
pub const MAX_BULK: usize = MAX_REQUEST;

/// The longest inline request line, Redis's `PROTO_INLINE_MAX_SIZE`.
pub const MAX_INLINE: usize = 64 * 1024;

/// Clients connected at once (Redis's `maxclients`); more are refused.
pub const MAX_CLIENTS: usize = 16;
