//! The TCP side: listening sockets on port 6379 and one kvcore
//! `Connection` per client.

use alloc::vec;
use alloc::vec::Vec;

use kvcore::{Connection, Outcome, Store};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};

use crate::journal::Journal;

pub const PORT: u16 = 6379;
/// Sockets kept listening, so this many clients can connect at once.
const MIN_LISTENING: usize = 8;
/// Bound on sockets, connected or not (each holds its buffers).
const MAX_SOCKETS: usize = 32;
/// Per-socket buffers: the receive buffer is the TCP window.
const RX_BUFFER: usize = 16 * 1024;
const TX_BUFFER: usize = 16 * 1024;
/// Requests run for one client before the others get their turn and the
/// interface is polled: a long pipeline, whose writes each wait for the
/// disk, does not hold up the other clients.
const REQUESTS_PER_TURN: usize = 16;

pub struct Server {
    slots: Vec<Slot>,
}

/// A socket and, while it is connected, its client.
struct Slot {
    handle: SocketHandle,
    client: Option<Client>,
}

impl Server {
    /// Opens the listening sockets.
    pub fn new(sockets: &mut SocketSet<'static>) -> Self {
        let mut server = Self { slots: Vec::new() };
        server.keep_listening(sockets);
        server
    }

    /// Serves every client as far as it can without waiting: reads,
    /// runs requests, makes changes durable, queues replies. Re-listens
    /// closed sockets. Returns whether anything moved, in which case the
    /// interface must be polled to send it.
    pub fn serve(
        &mut self,
        sockets: &mut SocketSet<'static>,
        store: &mut Store,
        journal: &mut Journal,
    ) -> bool {
        let mut progress = false;
        for slot in &mut self.slots {
            let socket = sockets.get_mut::<Socket>(slot.handle);
            match socket.state() {
                State::Closed => {
                    slot.client = None;
                    listen(socket);
                }
                State::Listen | State::SynReceived | State::SynSent => {}
                _ => {
                    let client = slot.client.get_or_insert_with(Client::default);
                    progress |= client.serve(socket, store, journal);
                }
            }
        }
        self.keep_listening(sockets);
        progress
    }

    /// Adds sockets until [`MIN_LISTENING`] listen (or [`MAX_SOCKETS`]
    /// exist): sockets closed by the server wait in TIME-WAIT for a while.
    fn keep_listening(&mut self, sockets: &mut SocketSet<'static>) {
        let listening = self
            .slots
            .iter()
            .filter(|slot| sockets.get::<Socket>(slot.handle).is_listening())
            .count();
        let wanted = MIN_LISTENING.saturating_sub(listening);
        let room = MAX_SOCKETS.saturating_sub(self.slots.len());
        for _ in 0..wanted.min(room) {
            let mut socket = Socket::new(
                SocketBuffer::new(vec![0; RX_BUFFER]),
                SocketBuffer::new(vec![0; TX_BUFFER]),
            );
            listen(&mut socket);
            self.slots.push(Slot {
                handle: sockets.add(socket),
                client: None,
            });
        }
    }
}

fn listen(socket: &mut Socket) {
    // Replies go out at once, as Redis's TCP_NODELAY makes them.
    socket.set_nagle_enabled(false);
    // Only fails for port 0 or a socket that is not closed.
    let _ = socket.listen(PORT);
}

/// One connected client.
#[derive(Default)]
struct Client {
    connection: Connection,
    /// Reply bytes the socket had no room for yet.
    unsent: Vec<u8>,
    /// After QUIT: close once the replies are sent.
    quitting: bool,
}

impl Client {
    /// Sends queued replies, then runs buffered requests and reads more,
    /// until the socket has no room or no data, or this turn's requests
    /// are done. Requests wait while a reply is unsent, so a pipelining
    /// client is paced by its reading.
    fn serve(&mut self, socket: &mut Socket, store: &mut Store, journal: &mut Journal) -> bool {
        let mut progress = false;
        let mut turn = 0;
        loop {
            if !self.unsent.is_empty() {
                let sent = socket.send_slice(&self.unsent).unwrap_or(0);
                if sent > 0 {
                    self.unsent.drain(..sent);
                    progress = true;
                }
                if !self.unsent.is_empty() {
                    return progress;
                }
            }
            if self.quitting {
                socket.close();
                return progress;
            }
            if turn == REQUESTS_PER_TURN {
                return progress;
            }
            if let Some(outcome) = self.connection.next_request(store) {
                self.respond(outcome, store, journal);
                turn += 1;
                progress = true;
            } else if socket.can_recv() {
                let connection = &mut self.connection;
                let _ = socket.recv(|data| {
                    connection.receive(data);
                    (data.len(), ())
                });
                progress = true;
            } else {
                if !socket.may_recv() {
                    // The client sent FIN and every request is answered.
                    socket.close();
                }
                return progress;
            }
        }
    }

    /// Queues an outcome's reply; a change is made durable, then applied.
    fn respond(&mut self, outcome: Outcome, store: &mut Store, journal: &mut Journal) {
        let durable = match &outcome.log {
            Some(entry) => journal.append(entry).map(|()| {
                store.apply_entry(entry);
            }),
            None => Ok(()),
        };
        match durable {
            Ok(()) if self.unsent.is_empty() => self.unsent = outcome.reply,
            Ok(()) => self.unsent.extend_from_slice(&outcome.reply),
            Err(error) => self.unsent.extend_from_slice(error.reply()),
        }
        self.quitting |= outcome.close;
    }
}
