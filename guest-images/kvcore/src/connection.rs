//! One client's connection: its input, parsed into requests, and its
//! session.

use alloc::vec::Vec;

use crate::kv::{Host, Kv, Outcome, Session};
use crate::resp::{Parsed, ProtocolError, RequestParser};

/// A parsed request, or the protocol error found instead.
pub struct Request(Result<Vec<Vec<u8>>, ProtocolError>);

/// One client's connection state.
///
/// Requests are RESP multibulk (`*N\r\n$len\r\narg\r\n...`) or inline (a
/// line of words ending in `\n` or `\r\n`, with Redis's quoting), parsed
/// as Redis 7 parses them. Several requests in one [`receive`] come one
/// per [`next_request`], to [`run`]; a partial one waits for more bytes.
/// Call [`next_request`] until it returns `None` after each [`receive`], so
/// the buffered input stays small (bulk data moves into its argument as it
/// arrives).
///
/// A protocol error (a malformed or oversized request) is replied with
/// Redis's error and closes the connection, as in Redis; so does QUIT
/// once its `+OK` is sent. Nothing the client sent after either is read.
///
/// [`receive`]: Connection::receive
/// [`next_request`]: Connection::next_request
/// [`run`]: Connection::run
#[derive(Default)]
pub struct Connection {
    parser: RequestParser,
    session: Session,
    /// After QUIT or a protocol error.
    closed: bool,
}

impl Connection {
    /// A connection whose client has id `id` (CLIENT ID, HELLO).
    pub fn new(id: u64) -> Self {
        Self {
            parser: RequestParser::default(),
            session: Session::new(id),
            closed: false,
        }
    }

    /// Bytes received from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.parser.receive(bytes);
        }
    }

    /// The next complete request, if the input holds one. `room` is how
    /// many bytes one argument may take in memory.
    pub fn next_request(&mut self, room: usize) -> Option<Request> {
        if self.closed {
            return None;
        }
        match self.parser.next(room) {
            Parsed::Pending => None,
            Parsed::Error(error) => Some(Request(Err(error))),
            Parsed::Request(args) => Some(Request(Ok(args))),
        }
    }

    /// The most `request` can log: its size, or for EXEC the transaction's
    /// (0 for a request that is queued or cannot log). The server makes
    /// that much room in the log before running it.
    pub fn log_bound(&self, request: &Request) -> usize {
        let Request(Ok(args)) = request else {
            return 0;
        };
        let size = |args: &[Vec<u8>]| args.iter().map(|arg| arg.len() + 10).sum::<usize>() + 32;
        let exec = args
            .first()
            .is_some_and(|name| name.eq_ignore_ascii_case(b"exec"));
        match &self.session.multi {
            Some(multi) if exec => multi.queued.iter().map(|args| size(args)).sum::<usize>() + 32,
            Some(_) => 0,
            None => size(args),
        }
    }

    /// Runs a request: its outcome. A protocol error's reply is the error,
    /// and the connection closes after it.
    pub fn run(&mut self, request: Request, kv: &mut Kv, host: &mut dyn Host) -> Outcome {
        let outcome = match request.0 {
            Err(error) => Outcome {
                reply: error.reply(),
                close: true,
            },
            Ok(args) => kv.execute(&mut self.session, args, host),
        };
        if outcome.close {
            self.close();
        }
        outcome
    }

    /// Parses and runs the next complete request, if the input holds one.
    #[cfg(test)]
    pub(crate) fn process(&mut self, kv: &mut Kv, host: &mut dyn Host) -> Option<Outcome> {
        let request = self.next_request(host.memory().room)?;
        Some(self.run(request, kv, host))
    }

    /// The bytes buffered and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.parser.buffered()
    }

    /// Ends the connection: nothing more is read (the server refused it).
    pub fn close(&mut self) {
        self.closed = true;
        self.parser = RequestParser::default();
    }

    /// Whether the connection is to close once its replies are sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the connection is inside MULTI.
    #[cfg(test)]
    pub(crate) fn in_transaction(&self) -> bool {
        self.session.multi.is_some()
    }
}
