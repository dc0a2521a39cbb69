//! RESP2 on the wire: framing requests out of a connection's input, as
//! Redis 7's `processMultibulkBuffer` and `processInlineBuffer` do, and
//! encoding replies.
//!
//! Where Redis would close the connection after a protocol error, the
//! parser resynchronises instead (see [`crate::Connection`] for the rule).

use alloc::vec::Vec;
use core::mem;

use crate::{MAX_REQUEST, inline, int};

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
    /// A protocol error to reply.
    Error(ProtocolError),
    /// Nothing more until more bytes arrive.
    Pending,
}

/// Redis's protocol errors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    /// A multibulk argument did not start with `$` but with this byte.
    ExpectedDollar(u8),
    TooBigInline,
    UnbalancedQuotes,
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
    /// Consuming the rest of an oversized multibulk request by its own
    /// framing: `data` more bytes of a bulk string (with its `\r\n`), then
    /// `args` more whole arguments.
    Skip { data: u64, args: u64 },
    /// Discarding input up to and including the next `\n`, after a
    /// malformed line.
    DiscardLine,
}

/// A multibulk request being read.
struct Multibulk {
    args: Vec<Vec<u8>>,
    /// Arguments still to come, at least one.
    remaining: usize,
    /// The length of the bulk string whose header has been read.
    bulk: Option<usize>,
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
#[derive(Default)]
pub(crate) struct RequestParser {
    buf: Vec<u8>,
    /// The start of the unparsed input in `buf`.
    pos: usize,
    state: State,
}

impl RequestParser {
    pub(crate) fn receive(&mut self, bytes: &[u8]) {
        // Consumed input is dropped here, once per packet, not per request.
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next request or protocol error in the input received so far.
    pub(crate) fn next(&mut self) -> Parsed {
        loop {
            let found = match mem::take(&mut self.state) {
                State::Start => self.start(),
                State::Inline { scanned } => self.inline(scanned),
                State::Multibulk(request) => self.multibulk(request),
                State::Skip { data, args } => self.skip(data, args),
                State::DiscardLine => self.discard_line(),
            };
            if let Some(parsed) = found {
                if self.pos >= self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                return parsed;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.input().len()
    }

    fn input(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn consume(&mut self, len: usize) {
        self.pos = self.pos.saturating_add(len).min(self.buf.len());
    }

    /// Replies `error` and discards the rest of the line where it was found.
    fn fail_line(&mut self, error: ProtocolError) -> Option<Parsed> {
        self.state = State::DiscardLine;
        Some(Parsed::Error(error))
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
            Header::Invalid => self.fail_line(ProtocolError::InvalidMultibulkLength),
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
                    _ => self.skip_rest(ProtocolError::InvalidMultibulkLength, 0, count),
                }
            }
        }
    }

    /// Replies `error` and consumes the rest of an oversized request.
    fn skip_rest(&mut self, error: ProtocolError, data: u64, args: u64) -> Option<Parsed> {
        self.state = State::Skip { data, args };
        Some(Parsed::Error(error))
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
            if len >= MAX_REQUEST {
                // The `\n` cannot fit any more: refuse now, drop the rest.
                self.consume(len);
                return self.fail_line(ProtocolError::TooBigInline);
            }
            self.state = State::Inline { scanned: len };
            return Some(Parsed::Pending);
        };
        let found = if newline >= MAX_REQUEST {
            Some(Parsed::Error(ProtocolError::TooBigInline))
        } else {
            let mut line = input.get(..newline).unwrap_or_default();
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            match inline::split_args(line) {
                None => Some(Parsed::Error(ProtocolError::UnbalancedQuotes)),
                // Blank lines are ignored, as Redis does.
                Some(args) if args.is_empty() => None,
                Some(args) => Some(Parsed::Request(args)),
            }
        };
        self.consume(newline + 1);
        found
    }

    fn multibulk(&mut self, request: Multibulk) -> Option<Parsed> {
        match request.bulk {
            None => self.bulk_header(request),
            Some(len) => self.bulk_data(request, len),
        }
    }

    fn bulk_header(&mut self, mut request: Multibulk) -> Option<Parsed> {
        let (data, header_len) = match read_bulk_header(self.input()) {
            Ok(Some(header)) => header,
            Ok(None) => {
                self.state = State::Multibulk(request);
                return Some(Parsed::Pending);
            }
            Err(error) => return self.fail_line(error),
        };
        self.consume(header_len);
        request.size = request.size.saturating_add(header_len);
        let after = request.remaining.saturating_sub(1) as u64;
        let least = (request.size as u64)
            .saturating_add(data)
            .saturating_add(2)
            .saturating_add(after.saturating_mul(MIN_ARG_LEN));
        match usize::try_from(data) {
            Ok(data) if least <= MAX_REQUEST as u64 => {
                request.bulk = Some(data);
                self.state = State::Multibulk(request);
                None
            }
            _ => self.skip_rest(
                ProtocolError::InvalidBulkLength,
                data.saturating_add(2),
                after,
            ),
        }
    }

    fn bulk_data(&mut self, mut request: Multibulk, len: usize) -> Option<Parsed> {
        let input = self.input();
        // Like Redis, take the two bytes after the data as its `\r\n`
        // without looking at them.
        let arg = match input.get(..len) {
            Some(arg) if input.len() - len >= 2 => arg.to_vec(),
            _ => {
                self.state = State::Multibulk(request);
                return Some(Parsed::Pending);
            }
        };
        self.consume(len + 2);
        request.args.push(arg);
        request.size = request.size.saturating_add(len + 2);
        request.remaining -= 1;
        request.bulk = None;
        if request.remaining == 0 {
            return Some(Parsed::Request(request.args));
        }
        self.state = State::Multibulk(request);
        None
    }

    fn skip(&mut self, data: u64, args: u64) -> Option<Parsed> {
        let input = self.input();
        if data > 0 {
            let available = input.len() as u64;
            let taken = data.min(available);
            self.consume(taken as usize);
            self.state = State::Skip {
                data: data - taken,
                args,
            };
            return (taken == available).then_some(Parsed::Pending);
        }
        if args == 0 {
            return None;
        }
        match read_bulk_header(input) {
            Ok(Some((data, header_len))) => {
                self.consume(header_len);
                self.state = State::Skip {
                    data: data.saturating_add(2),
                    args: args - 1,
                };
                None
            }
            Ok(None) => {
                self.state = State::Skip { data, args };
                Some(Parsed::Pending)
            }
            Err(error) => self.fail_line(error),
        }
    }

    fn discard_line(&mut self) -> Option<Parsed> {
        let input = self.input();
        match input.iter().position(|&byte| byte == b'\n') {
            Some(newline) => {
                self.consume(newline + 1);
                None
            }
            None => {
                self.consume(input.len());
                self.state = State::DiscardLine;
                Some(Parsed::Pending)
            }
        }
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

// Replies.

pub(crate) fn simple(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 3);
    out.push(b'+');
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    out
}

/// An error reply; `message` starts with its code (`ERR ...`).
pub(crate) fn error(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(b'-');
    out.extend_from_slice(message);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) fn integer(value: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.push(b':');
    int::push_i64(&mut out, value);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) fn bulk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 26);
    out.push(b'$');
    int::push_u64(&mut out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) const NULL_BULK: &[u8] = b"$-1\r\n";

pub(crate) const EMPTY_ARRAY: &[u8] = b"*0\r\n";
