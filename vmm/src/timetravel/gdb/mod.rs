//! `ftvm replay TRACE --gdb ADDR:PORT`: gdb debugs the replay over the GDB
//! remote protocol (gdbstub), as one x86-64 thread (the i386:x86-64 target
//! description whatever mode the guest is in). Memory and registers are
//! read-only, breakpoints are hardware ones, and execution runs backwards
//! as well as forwards (see [`super::session`]).

mod connection;
mod monitor;
mod target;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use gdbstub::stub::{DisconnectReason, GdbStub};

use super::session::Session;
use super::{ReplayError, Replayer, ending_status};
use crate::host::StopSignal;
use connection::{GdbConnection, is_disconnection};
use target::{Debuggee, EventLoop};

/// How often waiting for gdb looks for a signal to stop.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Why serving gdb failed.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The address cannot be listened on.
    #[error("cannot listen for gdb on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// The error underneath.
        source: io::Error,
    },
    /// gdb's connection could not be accepted.
    #[error("cannot accept gdb's connection: {0}")]
    Accept(#[source] io::Error),
    /// The connection failed (not by gdb going away).
    #[error("gdb connection: {0}")]
    Connection(#[source] io::Error),
    /// gdb sent what is not the remote protocol.
    #[error("the gdb client broke the remote protocol: {0}")]
    Protocol(String),
    /// The replay failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// Waits for gdb on `address`, with the replay stopped before the guest's
/// first instruction, and serves it until it detaches, kills the replay or
/// goes away, or the replay ends. Returns the status ftvm exits with.
pub fn serve(replayer: Replayer, address: &str) -> Result<u8, GdbError> {
    let listen_error = |source| GdbError::Listen {
        address: address.to_owned(),
        source,
    };
    let listener = TcpListener::bind(address).map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    eprintln!("ftvm: waiting for gdb: target remote {local}");
    let stop = replayer.stop_signal();
    let Some(stream) = accept(&listener, &stop)? else {
        return Ok(stopped(&stop));
    };
    drop(listener);
    let mut target = Debuggee::new(Session::new(replayer));
    let connection = GdbConnection::new(stream, stop.clone());
    let stub = GdbStub::<Debuggee, GdbConnection>::new(connection);
    let outcome = stub.run_blocking::<EventLoop>(&mut target);
    let mut replayer = target.into_session().into_replayer();
    match outcome {
        Ok(DisconnectReason::TargetExited(status)) => Ok(status),
        Ok(DisconnectReason::TargetTerminated(_)) => Ok(replayer.ending().map_or(0, ending_status)),
        Ok(DisconnectReason::Disconnect) => {
            // Detached: the replay runs on to its end.
            Ok(ending_status(replayer.run_to_end()?))
        }
        Ok(DisconnectReason::Kill) => {
            eprintln!("ftvm: gdb killed the replay");
            Ok(0)
        }
        Err(error) if error.is_target_error() => Err(error
            .into_target_error()
            .expect("a target error holds one")
            .into()),
        Err(error) if error.is_connection_error() => {
            let (io_error, _) = error
                .into_connection_error()
                .expect("a connection error holds one");
            if is_disconnection(&io_error) {
                eprintln!("ftvm: gdb went away; the replay stops here");
                Ok(0)
            } else if stop.requested().is_some() {
                Ok(stopped(&stop))
            } else {
                Err(GdbError::Connection(io_error))
            }
        }
        Err(error) => Err(GdbError::Protocol(error.to_string())),
    }
}

/// Waits for gdb's connection, or for a signal to stop (`None`).
fn accept(listener: &TcpListener, stop: &StopSignal) -> Result<Option<TcpStream>, GdbError> {
    listener.set_nonblocking(true).map_err(GdbError::Accept)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(GdbError::Accept)?;
                return Ok(Some(stream));
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.requested().is_some() {
                    return Ok(None);
                }
                thread::sleep(ACCEPT_POLL);
            }
            Err(error) => return Err(GdbError::Accept(error)),
        }
    }
}

/// The status of a replay a signal stopped, with a word on stderr.
fn stopped(stop: &StopSignal) -> u8 {
    match stop.requested() {
        Some(reason) => {
            eprintln!("ftvm: replay {reason}");
            reason.exit_status()
        }
        None => 0,
    }
}
