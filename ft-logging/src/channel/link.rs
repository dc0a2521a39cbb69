//! What one side's reader and writer threads share: the connection, when
//! the peer was last heard, and whether the link has ended; and the writer's
//! loop, which both sides run.

use std::io;
use std::iter;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::Lost;
use super::frame::{FrameError, FrameWriter};
use super::message::Message;

/// Queue entries a writer handles before it flushes, so a busy queue does
/// not hold small messages back.
const MAX_UNFLUSHED: usize = 64;

#[derive(Debug)]
pub(super) struct LinkState {
    /// "primary" or "backup", for logs.
    peer: &'static str,
    stream: TcpStream,
    start: Instant,
    /// Nanoseconds from `start` to the last byte received.
    last_heard: AtomicU64,
    ended: AtomicBool,
}

impl LinkState {
    pub(super) fn new(peer: &'static str, stream: TcpStream) -> Arc<Self> {
        Arc::new(Self {
            peer,
            stream,
            start: Instant::now(),
            last_heard: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        })
    }

    pub(super) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    pub(super) fn heard(&self) {
        let since_start = self.start.elapsed().as_nanos() as u64;
        self.last_heard.store(since_start, Ordering::Relaxed);
    }

    pub(super) fn last_heard(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_heard.load(Ordering::Relaxed))
    }

    /// Ends the link because the peer is lost, closing the connection so
    /// the other thread stops too. Only the first caller, and only while the
    /// link has not ended otherwise, gets the loss to report.
    pub(super) fn lose(&self, error: &FrameError) -> Option<Lost> {
        if self.ended.swap(true, Ordering::SeqCst) {
            return None;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        let lost = Lost {
            reason: error.to_string(),
            last_heard: self.last_heard(),
        };
        tracing::warn!(peer = self.peer, reason = %lost.reason, "lost the peer");
        Some(lost)
    }

    /// Ends the link without a report: the peer said goodbye, or we close.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// Ends the link and closes the connection, which wakes both threads.
    fn close(&self) {
        self.end();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A link's threads. Dropping it closes the connection and waits for them.
#[derive(Debug)]
pub(super) struct Workers {
    link: Arc<LinkState>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    pub(super) fn new(link: Arc<LinkState>) -> Self {
        Self {
            link,
            threads: Vec::new(),
        }
    }

    pub(super) fn spawn(
        &mut self,
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let thread = thread::Builder::new().name(name.into()).spawn(body)?;
        self.threads.push(thread);
        Ok(())
    }
}

impl Workers {
    /// Waits for the thread spawned last to end on its own.
    pub(super) fn join_last(&mut self) {
        if let Some(thread) = self.threads.pop()
            && thread.join().is_err()
        {
            tracing::error!(peer = self.link.peer, "a logging channel thread panicked");
        }
    }

    /// Ends the link without a report, then gives the thread spawned last
    /// up to `limit` to end on its own.
    pub(super) fn linger(&mut self, limit: Duration) {
        self.link.end();
        self.join_last_by(Instant::now() + limit);
    }

    /// Waits until `deadline` for the thread spawned last to end on its
    /// own; true if it did (or there was none).
    pub(super) fn join_last_by(&mut self, deadline: Instant) -> bool {
        while let Some(thread) = self.threads.last() {
            if thread.is_finished() {
                self.join_last();
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.link.close();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!(peer = self.link.peer, "a logging channel thread panicked");
            }
        }
    }
}

/// One side's writer: what its queue holds, and what it sends on its own.
pub(super) trait Outbox {
    type Item;
    type Message: Message;

    fn handle(&mut self, item: Self::Item) -> Step<Self::Message>;
    fn heartbeat(&self) -> Self::Message;
    /// A message held back so that only its latest value goes out, sent
    /// before each flush.
    fn deferred(&mut self) -> Option<Self::Message>;
}

/// What a writer does with a queue entry.
pub(super) enum Step<M> {
    Send(M),
    /// Nothing to send now.
    Skip,
    /// Sends the message if any, then ends this direction of the connection.
    Close(Option<M>),
    /// Ends the writer: the link is being dropped.
    Stop,
}

/// Sends what the queue brings, and heartbeats when it brings nothing for
/// `heartbeat`. Returns the loss to report if the connection failed.
pub(super) fn run_writer<O: Outbox>(
    outbox: &mut O,
    queue: &Receiver<O::Item>,
    mut frames: FrameWriter,
    heartbeat: Duration,
    link: &LinkState,
) -> Option<Lost> {
    let error = pump(outbox, queue, &mut frames, heartbeat).err()?;
    link.lose(&error)
}

fn pump<O: Outbox>(
    outbox: &mut O,
    queue: &Receiver<O::Item>,
    frames: &mut FrameWriter,
    heartbeat: Duration,
) -> Result<(), FrameError> {
    let mut last_sent = Instant::now();
    loop {
        let sent = frames.sent();
        let first = match queue.recv_deadline(last_sent + heartbeat) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                frames.send(&outbox.heartbeat())?;
                frames.flush()?;
                last_sent = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        for item in iter::once(first).chain(queue.try_iter().take(MAX_UNFLUSHED)) {
            match outbox.handle(item) {
                Step::Send(message) => frames.send(&message)?,
                Step::Skip => {}
                Step::Close(last) => {
                    if let Some(message) = last {
                        frames.send(&message)?;
                    }
                    return frames.close();
                }
                Step::Stop => return Ok(()),
            }
        }
        if let Some(message) = outbox.deferred() {
            frames.send(&message)?;
        }
        frames.flush()?;
        if frames.sent() != sent {
            last_sent = Instant::now();
        } else if last_sent.elapsed() >= heartbeat {
            // Entries that send nothing must not hold heartbeats back.
            frames.send(&outbox.heartbeat())?;
            frames.flush()?;
            last_sent = Instant::now();
        }
    }
}
