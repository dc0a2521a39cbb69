//! Requests on the wire: RESP multibulk requests and inline commands,
//! framed out of a connection's input as Redis 7's
//! `processMultibulkBuffer` and `processInlineBuffer` do.
//!
//! A protocol error is replied with Redis's wording and ends the
//! connection, as in Redis: nothing after it is parsed.

use alloc::vec::Vec;
use core::mem;

use crate::{MAX_BULK, MAX_INLINE, MAX_REQUEST, inline, int};

/// The fewest bytes one multibulk argument takes (`$0\r\n\r\n`): a request
/// announcing more arguments than can fit in [`MAX_REQUEST`] is refused as
/// soon as its header arrives.
const MIN_ARG_LEN: u64 = 6;

/// Argument slots allocated up front for a multibulk request: its header's
/// count is the client's word, not a reason to allocate.
const PREALLOCATED_ARGS: usize = 8;

/// What the parser found next in a connection's input.
pub(crate) enum Parsed {
    /// A complete request: its arguments, never none.
    Request(Vec<Vec<u8>>),
    /// A protocol error to reply before closing the connection.
    Error(ProtocolError),
    /// Nothing more until more bytes arrive.
    Pending,
}

/// Redis's protocol errors, and one of ours: an argument the guest has no
/// memory for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    /// A multibulk argument did not start with `$` but with this byte.
    ExpectedDollar(u8),
    TooBigInline,
    UnbalancedQuotes,
    OutOfMemory,
}

impl ProtocolError {
    /// The error reply, worded as Redis 7 words it.
    pub(crate) fn reply(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"-ERR Protocol error: ");
        match self {
            Self::InvalidMultibulkLength => out.extend_from_slice(b"invalid multibulk length"),
            Self::InvalidBulkLength => out.extend_from_slice(b"invalid bulk length"),
            Self::TooBigInline => out.extend_from_slice(b"too big inline request"),
            Self::UnbalancedQuotes => out.extend_from_slice(b"unbalanced quotes in request"),
            Self::OutOfMemory => {
                out.clear();
                out.push(b'-');
                out.extend_from_slice(crate::reply::OOM);
            }
            Self::ExpectedDollar(byte) => {
                out.extend_from_slice(b"expected '$', got '");
                // Redis formats with `%c` into a C string, so a NUL ends the
                // message there, and maps CR and LF to spaces.
                if byte != 0 {
                    out.push(if byte == b'\r' || byte == b'\n' {
                        b' '
                    } else {
                        byte
                    });
                    out.push(b'\'');
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Where the parser is in the input.
#[derive(Default)]
enum State {
    /// At the start of a request.
    #[default]
    Start,
    /// In an inline request whose first `scanned` bytes hold no `\n`.
    Inline { scanned: usize },
    /// In a multibulk request.
    Multibulk(Multibulk),
    /// After a protocol error: nothing more is parsed.
    Failed,
}

/// A multibulk request being read.
struct Multibulk {
    args: Vec<Vec<u8>>,
    /// Arguments still to come, at least one.
    remaining: usize,
    /// The bulk string being read: its length and the bytes so far.
    bulk: Option<(usize, Vec<u8>)>,
    /// The request's bytes so far.
    size: usize,
}

/// A `*N` or `$N` header line.
enum Header {
    Pending,
    Invalid,
    Line { value: i64, len: usize },
}

/// Frames requests out of one connection's input.
///
/// Bulk data moves straight into its argument as it arrives, so the
/// buffer holds little more than the last packet however large the
/// request.
#[derive(Default)]
pub(crate) struct RequestParser {
    buf: Vec<u8>,
    /// The start of the unparsed input in `buf`.
    pos: usize,
    state: State,
}

impl RequestParser {
    pub(crate) fn receive(&mut self, mut bytes: &[u8]) {
        if matches!(self.state, State::Failed) {
            return;
        }
        // Data of a bulk string being read goes straight into it (once
        // nothing before it waits in the buffer): one copy, not two.
        if self.input().is_empty()
            && let State::Multibulk(Multibulk {
                bulk: Some((len, arg)),
                ..
            }) = &mut self.state
        {
            let (data, rest) = bytes.split_at((*len - arg.len()).min(bytes.len()));
            arg.extend_from_slice(data);
            bytes = rest;
        }
        // Consumed input is dropped here, once per packet, not per request.
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next request or protocol error in the input received so far.
    /// `room` is how many bytes a new argument may take in memory: a
    /// larger one is refused.
    pub(crate) fn next(&mut self, room: usize) -> Parsed {
        loop {
            let found = match mem::take(&mut self.state) {
                State::Start => self.start(),
                State::Inline { scanned } => self.inline(scanned),
                State::Multibulk(request) => self.multibulk(request, room),
                State::Failed => {
                    self.state = State::Failed;
                    return Parsed::Pending;
                }
            };
            if let Some(parsed) = found {
                if self.pos >= self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                if let Parsed::Error(_) = parsed {
                    self.state = State::Failed;
                    self.buf = Vec::new();
                    self.pos = 0;
                }
                return parsed;
            }
        }
    }

    /// The bytes buffered and not yet consumed.
    pub(crate) fn buffered(&self) -> usize {
        self.input().len()
    }

    fn input(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn consume(&mut self, len: usize) {
        self.pos = self.pos.saturating_add(len).min(self.buf.len());
    }

    // Each step below handles one piece of input, sets the next state and
    // returns `None` to go on or what the caller gets.

    fn start(&mut self) -> Option<Parsed> {
        let input = self.input();
        let Some(&first) = input.first() else {
            return Some(Parsed::Pending);
        };
        if first != b'*' {
            self.state = State::Inline { scanned: 0 };
            return None;
        }
        match header(input) {
            Header::Pending => Some(Parsed::Pending),
            Header::Invalid => Some(Parsed::Error(ProtocolError::InvalidMultibulkLength)),
            Header::Line { value, len } => {
                self.consume(len);
                // As in Redis, `*0` and `*-1` are empty requests, ignored.
                let Ok(count) = u64::try_from(value) else {
                    return None;
                };
                if count == 0 {
                    return None;
                }
                let least = (len as u64).saturating_add(count.saturating_mul(MIN_ARG_LEN));
                match usize::try_from(count) {
                    Ok(remaining) if least <= MAX_REQUEST as u64 => {
                        self.state = State::Multibulk(Multibulk {
                            args: Vec::with_capacity(remaining.min(PREALLOCATED_ARGS)),
                            remaining,
                            bulk: None,
                            size: len,
                        });
                        None
                    }
                    _ => Some(Parsed::Error(ProtocolError::InvalidMultibulkLength)),
                }
            }
        }
    }

    fn inline(&mut self, scanned: usize) -> Option<Parsed> {
        let input = self.input();
        let from = scanned.min(input.len());
        let newline = input
            .get(from..)
            .and_then(|rest| rest.iter().position(|&byte| byte == b'\n'))
            .map(|offset| from + offset);
        let Some(newline) = newline else {
            let len = input.len();
            if len > MAX_INLINE {
                return Some(Parsed::Error(ProtocolError::TooBigInline));
            }
            self.state = State::Inline { scanned: len };
            return Some(Parsed::Pending);
        };
        if newline > MAX_INLINE {
            return Some(Parsed::Error(ProtocolError::TooBigInline));
        }
        let mut line = input.get(..newline).unwrap_or_default();
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let found = match inline::split_args(line) {
            None => Some(Parsed::Error(ProtocolError::UnbalancedQuotes)),
            // Blank lines are ignored, as Redis does.
            Some(args) if args.is_empty() => None,
            Some(args) => Some(Parsed::Request(args)),
        };
        self.consume(newline + 1);
        found
    }

    fn multibulk(&mut self, request: Multibulk, room: usize) -> Option<Parsed> {
        if request.bulk.is_some() {
            self.bulk_data(request)
        } else {
            self.bulk_header(request, room)
        }
    }

    fn bulk_header(&mut self, mut request: Multibulk, room: usize) -> Option<Parsed> {
        let (data, header_len) = match read_bulk_header(self.input()) {
            Ok(Some(header)) => header,
            Ok(None) => {
                self.state = State::Multibulk(request);
                return Some(Parsed::Pending);
            }
            Err(error) => return Some(Parsed::Error(error)),
        };
        self.consume(header_len);
        request.size = request.size.saturating_add(header_len);
        let after = request.remaining.saturating_sub(1) as u64;
        let least = (request.size as u64)
            .saturating_add(data)
            .saturating_add(2)
            .saturating_add(after.saturating_mul(MIN_ARG_LEN));
        let len = match usize::try_from(data) {
            Ok(len) if least <= MAX_REQUEST as u64 && len <= MAX_BULK => len,
            _ => return Some(Parsed::Error(ProtocolError::InvalidBulkLength)),
        };
        let mut arg = Vec::new();
        if len > room || arg.try_reserve_exact(len).is_err() {
            return Some(Parsed::Error(ProtocolError::OutOfMemory));
        }
        request.bulk = Some((len, arg));
        self.state = State::Multibulk(request);
        None
    }

    fn bulk_data(&mut self, mut request: Multibulk) -> Option<Parsed> {
        let (len, mut arg) = request.bulk.take()?;
        let input = self.input();
        let wanted = len - arg.len();
        let taken = wanted.min(input.len());
        arg.extend_from_slice(input.get(..taken).unwrap_or_default());
        // Like Redis, take the two bytes after the data as its `\r\n`
        // without looking at them.
        let done = arg.len() == len && input.len() - taken >= 2;
        self.consume(taken + if done { 2 } else { 0 });
        if !done {
            request.bulk = Some((len, arg));
            self.state = State::Multibulk(request);
            return Some(Parsed::Pending);
        }
        request.args.push(arg);
        request.size = request.size.saturating_add(len + 2);
        request.remaining -= 1;
        if request.remaining == 0 {
            return Some(Parsed::Request(request.args));
        }
        self.state = State::Multibulk(request);
        None
    }
}

/// Reads the `$N` header an argument starts with: its `N` and its own
/// length once complete.
fn read_bulk_header(input: &[u8]) -> Result<Option<(u64, usize)>, ProtocolError> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    if first != b'$' {
        return Err(ProtocolError::ExpectedDollar(first));
    }
    match header(input) {
        Header::Pending => Ok(None),
        Header::Invalid => Err(ProtocolError::InvalidBulkLength),
        Header::Line { value, len } => match u64::try_from(value) {
            Ok(data) => Ok(Some((data, len))),
            Err(_) => Err(ProtocolError::InvalidBulkLength),
        },
    }
}

/// Reads the `*N` or `$N` header line at the start of `input` (its first
/// byte already checked).
///
/// As in Redis, the line ends at its `\r` and the byte after it is taken
/// as the `\n` unseen; the number is read by `string2ll`. A line longer
/// than any valid number is refused before its `\r` arrives.
fn header(input: &[u8]) -> Header {
    let digits = input.get(1..).unwrap_or_default();
    let window = digits.get(..=int::MAX_I64_LEN).unwrap_or(digits);
    match window.iter().position(|&byte| byte == b'\r') {
        Some(cr) if digits.len() > cr + 1 => {
            match int::parse_i64(digits.get(..cr).unwrap_or_default()) {
                Some(value) => Header::Line {
                    value,
                    len: 1 + cr + 2,
                },
                None => Header::Invalid,
            }
        }
        Some(_) => Header::Pending,
        None if digits.len() > int::MAX_I64_LEN => Header::Invalid,
        None => Header::Pending,
    }
}
