//! The logic of ftvm's Redis-compatible key-value guest (`kvstore`): the
//! RESP2 request parser, the commands, the in-memory store and its disk log.
//!
//! The crate is pure: the guest kernel owns the sockets and the disk, feeds
//! received bytes to a [`Connection`], sends back each [`Outcome`]'s reply
//! and appends its log entry through a [`log::LogWriter`] first.
//!
//! It runs inside guests, whose code must not reach `core::fmt` or core's
//! string searching: their precompiled code uses SIMD that KVM's
//! instruction emulator cannot run (docs/DESIGN.md §1). So nothing here formats,
//! derives `Debug` or searches `str`, integers are printed and parsed by
//! hand (`int`), and no input, however hostile, makes it panic.
#![no_std]
// `Debug` is `core::fmt`; guest code must not reach it.
#![allow(missing_debug_implementations)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod command;
mod connection;
mod crc32c;
mod inline;
mod int;
pub mod log;
mod resp;
mod store;
#[cfg(test)]
mod tests;

pub use command::Outcome;
pub use connection::Connection;
pub use store::Store;

/// The largest request accepted, in bytes: 64 KiB, Redis's limit on inline
/// requests (`PROTO_INLINE_MAX_SIZE`).
///
/// It bounds an inline request's line including its `\n`, a multibulk
/// request in total (header lines, bulk strings and their `\r\n`s), and so
/// any one bulk string. A larger request is refused with the protocol error
/// Redis uses for it (`too big inline request`, `invalid multibulk length`
/// when the argument count alone cannot fit, `invalid bulk length`) and
/// consumed without being executed (see [`Connection`]). A connection
/// therefore buffers at most about this much.
pub const MAX_REQUEST: usize = 64 * 1024;
