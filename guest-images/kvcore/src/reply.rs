//! Replies in RESP2, or RESP3 after `HELLO 3`, encoded as Redis 7 sends
//! them.

use alloc::vec::Vec;

use crate::int;
use crate::score::Score;

/// The protocol a connection speaks.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// One command's reply being built.
///
/// Bulk data past `limit` bytes in all is not written: the reply is then
/// [`overflowed`](Reply::overflowed) and the caller sends an error instead
/// (the guest's memory is small; see `kvstore`'s limits).
pub(crate) struct Reply {
    out: Vec<u8>,
    proto: Protocol,
    limit: usize,
    overflow: bool,
}

pub(crate) const WRONGTYPE: &[u8] =
    b"WRONGTYPE Operation against a key holding the wrong kind of value";
pub(crate) const NOT_INTEGER: &[u8] = b"ERR value is not an integer or out of range";
pub(crate) const SYNTAX: &[u8] = b"ERR syntax error";
pub(crate) const NOT_FLOAT: &[u8] = b"ERR value is not a valid float";
pub(crate) const OOM: &[u8] = b"OOM command not allowed when used memory > 'maxmemory'.";

impl Reply {
    pub(crate) fn new(proto: Protocol, limit: usize) -> Self {
        Self {
            out: Vec::new(),
            proto,
            limit,
            overflow: false,
        }
    }

    pub(crate) fn proto(&self) -> Protocol {
        self.proto
    }

    /// HELLO replies in the protocol it switches to.
    pub(crate) fn set_proto(&mut self, proto: Protocol) {
        self.proto = proto;
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    fn line(&mut self, prefix: u8, text: &[u8]) {
        self.out.push(prefix);
        self.out.extend_from_slice(text);
        self.out.extend_from_slice(b"\r\n");
    }

    fn header(&mut self, prefix: u8, len: usize) {
        self.out.push(prefix);
        int::push_u64(&mut self.out, len as u64);
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn simple(&mut self, text: &[u8]) {
        self.line(b'+', text);
    }

    pub(crate) fn ok(&mut self) {
        self.simple(b"OK");
    }

    /// An error; `message` starts with its code (`ERR ...`). Line breaks in
    /// it become spaces, as Redis makes them.
    pub(crate) fn error(&mut self, message: &[u8]) {
        self.out.push(b'-');
        self.out.extend(message.iter().map(|&byte| match byte {
            b'\r' | b'\n' => b' ',
            other => other,
        }));
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn integer(&mut self, value: i64) {
        self.out.push(b':');
        int::push_i64(&mut self.out, value);
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn bulk(&mut self, data: &[u8]) {
        if self.out.len().saturating_add(data.len()) > self.limit {
            self.overflow = true;
            return;
        }
        self.header(b'$', data.len());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub(crate) fn null(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    pub(crate) fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.header(b'*', len);
    }

    /// A map of `len` pairs: a flat array of twice as many in RESP2.
    pub(crate) fn map(&mut self, len: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', len * 2),
            Protocol::Resp3 => self.header(b'%', len),
        }
    }

    /// A set: an array in RESP2.
    pub(crate) fn set(&mut self, len: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', len),
            Protocol::Resp3 => self.header(b'~', len),
        }
    }

    /// A double: a bulk string in RESP2.
    pub(crate) fn double(&mut self, score: Score) {
        let mut text = Vec::new();
        score.push_text(&mut text);
        match self.proto {
            Protocol::Resp2 => self.bulk(&text),
            Protocol::Resp3 => self.line(b',', &text),
        }
    }

    /// Text such as INFO's: a verbatim string (`txt`) in RESP3.
    pub(crate) fn verbatim(&mut self, text: &[u8]) {
        match self.proto {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                if self.out.len().saturating_add(text.len()) > self.limit {
                    self.overflow = true;
                    return;
                }
                self.header(b'=', text.len() + 4);
                self.out.extend_from_slice(b"txt:");
                self.out.extend_from_slice(text);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }
}
