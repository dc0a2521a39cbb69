//! One client's connection.

use crate::resp::{Parsed, RequestParser};
use crate::{Outcome, Store, command};

/// One client's connection state: its unparsed input.
///
/// Requests are RESP2 multibulk (`*N\r\n$len\r\narg\r\n...`) or inline (a
/// line of words ending in `\n` or `\r\n`, with Redis's quoting), parsed
/// as Redis 7 parses them. Several requests in one [`receive`] are run one
/// per [`next_request`]; a partial one waits for more bytes. Call
/// [`next_request`] until it returns `None` after each [`receive`], so the
/// buffered input stays below about [`MAX_REQUEST`](crate::MAX_REQUEST).
///
/// # Protocol errors
///
/// Redis replies to a protocol error and closes the connection. Here the
/// connection replies the same error and carries on:
///
/// - A malformed request (a bad `*N` or `$N` header, an argument not
///   starting with `$`, unbalanced quotes) is discarded up to and including
///   the end (`\n`) of the line where the error was found; parsing resumes
///   after it. Nothing else marks where a malformed request ends, and the
///   rule does not depend on how the input was split into packets.
/// - An oversized but well-formed request (over
///   [`MAX_REQUEST`](crate::MAX_REQUEST)) gets one error as soon as its
///   size is known and is then consumed by its own framing, however it
///   arrives: the rest of an inline line up to its `\n`; for a multibulk
///   request, the rest of the oversized bulk string and each remaining
///   argument by its `$len` header. None of it is executed, so a large
///   value that happens to contain `\r\nDEL key\r\n` deletes nothing. A
///   malformed header met while skipping is itself a malformed request.
///
/// [`receive`]: Connection::receive
/// [`next_request`]: Connection::next_request
#[derive(Default)]
pub struct Connection {
    parser: RequestParser,
    /// After QUIT: nothing more is read or run.
    closed: bool,
}

impl Connection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.parser.receive(bytes);
        }
    }

    /// Parses and executes the next complete request, if the buffer holds
    /// one, without changing `store` (see [`Outcome::log`]). A protocol
    /// error is an outcome too: its reply is the error.
    pub fn next_request(&mut self, store: &Store) -> Option<Outcome> {
        if self.closed {
            return None;
        }
        let outcome = match self.parser.next() {
            Parsed::Pending => return None,
            Parsed::Error(error) => Outcome::protocol_error(error),
            Parsed::Request(args) => command::execute(store, &args),
        };
        if outcome.close {
            // Like Redis after QUIT, ignore whatever the client sent next.
            self.closed = true;
            self.parser = RequestParser::default();
        }
        Some(outcome)
    }

    /// The bytes buffered and not yet consumed.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.parser.buffered()
    }

    /// Whether QUIT was run: the server should close the connection once
    /// the replies so far are sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
