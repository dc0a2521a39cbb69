//! The TCP side: listening sockets on port 6379 and one kvcore
//! `Connection` per client, served in rounds. A round runs what each
//! client has sent (up to a turn each), then commits every log entry the
//! round staged with one write and one flush; replies that come after an
//! entry was staged are held until that commit, so no client hears of a
//! change, its own or another's, before it is on the disk.

use alloc::vec;
use alloc::vec::Vec;

use kvcore::{Connection, MAX_CLIENTS};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};

use crate::store::{self, Store};

pub const PORT: u16 = 6379;
/// Sockets kept listening, so this many clients can connect at once.
const MIN_LISTENING: usize = 8;
/// Bound on sockets, connected or not (each holds its buffers).
const MAX_SOCKETS: usize = 32;
/// Per-socket buffers: the receive buffer is the TCP window.
const RX_BUFFER: usize = 32 * 1024;
const TX_BUFFER: usize = 32 * 1024;
/// Requests run for one client before the next client's turn.
const REQUESTS_PER_TURN: usize = 64;
/// Staged log bytes past which a round takes no more requests: bounds a
/// commit's memory and write.
const ROUND_STAGED: usize = 1 << 20;

const MAX_CLIENTS_ERROR: &[u8] = b"-ERR max number of clients reached\r\n";
const WRITE_FAILED: &[u8] = b"-ERR disk write failed\r\n";

pub struct Server {
    slots: Vec<Slot>,
    next_id: u64,
}

/// A socket and, while it is connected, its client.
struct Slot {
    handle: SocketHandle,
    client: Option<Client>,
}

/// One connected client.
struct Client {
    connection: Connection,
    /// Replies ready to send, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// This round's replies, held until its commit.
    held: Vec<Held>,
}

struct Held {
    reply: Vec<u8>,
    /// Whether the request logged an entry: if the commit fails its reply
    /// becomes an error.
    logged: bool,
}

impl Server {
    /// Opens the listening sockets.
    pub fn new(sockets: &mut SocketSet<'static>) -> Self {
        let mut server = Self {
            slots: Vec::new(),
            next_id: 1,
        };
        server.keep_listening(sockets);
        server
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.client.is_some())
            .count()
    }

    /// One round's first half: takes new clients, runs what clients sent,
    /// re-listens closed sockets. Whether anything moved.
    pub fn serve(&mut self, sockets: &mut SocketSet<'static>, store: &mut Store) -> bool {
        let mut progress = false;
        let mut clients = self.clients();
        for slot in &mut self.slots {
            let socket = sockets.get_mut::<Socket>(slot.handle);
            match socket.state() {
                State::Closed => {
                    slot.client = None;
                    listen(socket);
                }
                State::Listen | State::SynReceived | State::SynSent => {}
                _ => {
                    let client = match &mut slot.client {
                        Some(client) => client,
                        None => {
                            let id = self.next_id;
                            self.next_id += 1;
                            store.kv.connected();
                            clients += 1;
                            slot.client.insert(Client::new(id, clients > MAX_CLIENTS))
                        }
                    };
                    progress |= client.serve(socket, store, clients);
                }
            }
        }
        self.keep_listening(sockets);
        progress
    }

    /// After the round's commit: its held replies go out, those of logged
    /// requests as errors if the commit failed.
    pub fn settle(&mut self, committed: bool) {
        for client in self
            .slots
            .iter_mut()
            .filter_map(|slot| slot.client.as_mut())
        {
            for held in core::mem::take(&mut client.held) {
                if held.logged && !committed {
                    client.queue(WRITE_FAILED.to_vec());
                } else {
                    client.queue(held.reply);
                }
            }
        }
    }

    /// Sends what the sockets take; closes the connections that are done.
    /// Whether anything was sent.
    pub fn send(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let mut progress = false;
        for slot in &mut self.slots {
            if let Some(client) = &mut slot.client {
                let socket = sockets.get_mut::<Socket>(slot.handle);
                progress |= client.send(socket);
            }
        }
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

impl Client {
    /// A new client; one over the limit gets Redis's error and is closed.
    fn new(id: u64, over_limit: bool) -> Self {
        let mut client = Self {
            connection: Connection::new(id),
            out: Vec::new(),
            sent: 0,
            held: Vec::new(),
        };
        if over_limit {
            client.queue(MAX_CLIENTS_ERROR.to_vec());
            client.connection.close();
        }
        client
    }

    /// Queues a reply to send (taking it whole when nothing waits).
    fn queue(&mut self, reply: Vec<u8>) {
        if self.out.is_empty() {
            self.out = reply;
            self.sent = 0;
        } else {
            self.out.extend_from_slice(&reply);
        }
    }

    /// Runs this turn's requests, reading more as needed. Requests wait
    /// while replies are unsent, so a pipelining client is paced by its
    /// reading: a client that does not read stops being served, its
    /// window closes and it stops sending.
    fn serve(&mut self, socket: &mut Socket, store: &mut Store, clients: usize) -> bool {
        let mut progress = self.send(socket);
        if !self.out.is_empty() || self.connection.is_closed() {
            return progress;
        }
        let mut turn = 0;
        while turn < REQUESTS_PER_TURN && store.journal.staged_bytes() < ROUND_STAGED {
            if let Some(request) = self.connection.next_request(store::memory().room) {
                let (outcome, logged) = store.run(&mut self.connection, request, clients);
                if store.journal.has_staged() || !self.held.is_empty() {
                    self.held.push(Held {
                        reply: outcome.reply,
                        logged,
                    });
                } else {
                    self.queue(outcome.reply);
                }
                turn += 1;
                progress = true;
                if self.connection.is_closed() {
                    break;
                }
            } else if socket.can_recv() {
                let connection = &mut self.connection;
                let _ = socket.recv(|data| {
                    connection.receive(data);
                    (data.len(), ())
                });
                progress = true;
            } else {
                break;
            }
        }
        progress | self.send(socket)
    }

    /// Sends ready replies; closes the socket once the client sent FIN or
    /// its connection ended and everything is sent. Whether anything moved.
    fn send(&mut self, socket: &mut Socket) -> bool {
        let mut progress = false;
        if !self.out.is_empty() {
            let unsent = self.out.get(self.sent..).unwrap_or_default();
            let sent = socket.send_slice(unsent).unwrap_or(0);
            self.sent += sent;
            progress = sent > 0;
            if self.sent >= self.out.len() {
                self.out = Vec::new();
                self.sent = 0;
            }
        }
        let done = self.out.is_empty() && self.held.is_empty();
        let finished = self.connection.is_closed()
            || !socket.may_recv() && !socket.can_recv() && self.connection.buffered() == 0;
        if done && finished && socket.is_open() {
            socket.close();
        }
        progress
    }
}
