//! gdb's TCP connection. gdbstub's own TcpStream support reads a closed
//! connection's EOF as a NUL byte when peeking; here EOF is an error, so a
//! client that goes away is told apart from one that sends garbage.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use gdbstub::conn::{Connection, ConnectionExt};

use crate::host::StopSignal;

#[derive(Debug)]
pub struct GdbConnection {
    stream: TcpStream,
    nonblocking: bool,
    /// A reply being written, sent whole at `flush`.
    pending: Vec<u8>,
    /// A signal interrupts a read only once it asked ftvm to stop.
    stop: Arc<StopSignal>,
}

impl GdbConnection {
    pub fn new(stream: TcpStream, stop: Arc<StopSignal>) -> Self {
        Self {
            stream,
            nonblocking: false,
            pending: Vec::new(),
            stop,
        }
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        if self.nonblocking != nonblocking {
            self.stream.set_nonblocking(nonblocking)?;
            self.nonblocking = nonblocking;
        }
        Ok(())
    }
}

/// Whether an I/O error means the client went away.
pub fn is_disconnection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

fn closed() -> io::Error {
    io::Error::new(ErrorKind::UnexpectedEof, "gdb closed the connection")
}

impl Connection for GdbConnection {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.pending.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.set_nonblocking(false)?;
        Write::write_all(&mut self.stream, &self.pending)?;
        self.pending.clear();
        Ok(())
    }

    fn on_session_start(&mut self) -> io::Result<()> {
        self.stream.set_nodelay(true)
    }
}

impl ConnectionExt for GdbConnection {
    fn read(&mut self) -> io::Result<u8> {
        self.flush()?;
        let mut byte = [0];
        loop {
            match Read::read(&mut self.stream, &mut byte) {
                Ok(0) => return Err(closed()),
                Ok(_) => return Ok(byte[0]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {
                    if self.stop.requested().is_some() {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        self.set_nonblocking(true)?;
        let mut byte = [0];
        match self.stream.peek(&mut byte) {
            Ok(0) => Err(closed()),
            Ok(_) => Ok(Some(byte[0])),
            Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }
}
