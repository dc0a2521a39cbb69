//! The live event source: this host's clock, stdin, disk completions and
//! received frames, handed to the guest at exits.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ft_logging::{End, Event, EventSource, ExitDone, ExitQuery, MSR_TSC, SourceError, StateDigest};

use super::serial_line::LinePace;
use super::{SerialWindow, StopSignal, VirtualClock};
use crate::monitor::NetCounters;

/// What the host's input threads send to the vCPU thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostInput {
    /// Bytes for the guest's serial line.
    Serial(Vec<u8>),
    /// No more serial input will come.
    SerialClosed,
    /// Nothing but a reason to look at the stop signal.
    Wake,
    /// This side lost the go-live flag: the run must stop, for this reason.
    Fenced(String),
    /// A disk request completed (an [`Event::DiskDone`]).
    Disk(Event),
    /// A frame arrived on the TAP device.
    Frame(Vec<u8>),
}

/// Frames that may wait for the guest's receive buffers; more are dropped,
/// as a NIC's ring overflows.
const MAX_QUEUED_FRAMES: usize = 512;

/// Events from the host: its monotonic clock and stdin. Serial input waits
/// in a backlog (bounded by the [`SerialWindow`]) and enters the UART's
/// FIFO at an exit when it has room and the line's pace allows.
#[derive(Debug)]
pub struct LiveSource {
    input: Receiver<HostInput>,
    stop: Arc<StopSignal>,
    clock: VirtualClock,
    backlog: VecDeque<u8>,
    window: SerialWindow,
    line: LinePace,
    /// Disk completions, applied at the next exit.
    completions: Vec<Event>,
    /// Frames waiting for receive buffers.
    frames: VecDeque<Vec<u8>>,
    dropped_frames: u64,
    serial_open: bool,
    fenced: Option<String>,
    /// Virtual time never goes back, whatever the host clock does.
    last_ns: u64,
    /// Where frames handed to the guest are counted.
    received: Option<NetCounters>,
}

impl LiveSource {
    /// Events from `input` (stdin through `window`), stopping at `stop`,
    /// timed by `clock`.
    pub fn new(
        input: Receiver<HostInput>,
        window: SerialWindow,
        stop: Arc<StopSignal>,
        clock: VirtualClock,
    ) -> Self {
        let last_ns = clock.now_ns();
        Self {
            input,
            stop,
            clock,
            backlog: VecDeque::new(),
            window,
            line: LinePace::default(),
            completions: Vec::new(),
            frames: VecDeque::new(),
            dropped_frames: 0,
            serial_open: true,
            fenced: None,
            last_ns,
            received: None,
        }
    }

    /// Counts the frames this source hands to the guest in `counters`.
    pub fn counting(mut self, counters: NetCounters) -> Self {
        self.received = Some(counters);
        self
    }

    fn take(&mut self, message: HostInput) {
        match message {
            HostInput::Serial(bytes) => self.backlog.extend(bytes),
            HostInput::SerialClosed => self.serial_open = false,
            HostInput::Wake => {}
            HostInput::Fenced(reason) => self.fenced = Some(reason),
            HostInput::Disk(done) => self.completions.push(done),
            HostInput::Frame(frame) if self.frames.len() < MAX_QUEUED_FRAMES => {
                self.frames.push_back(frame);
            }
            HostInput::Frame(_) => {
                self.dropped_frames += 1;
                if let Some(counters) = &self.received {
                    counters.discarded_frames.inc();
                }
                if self.dropped_frames.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped_frames,
                        "the guest takes frames slower than they arrive; dropping"
                    );
                }
            }
        }
    }

    fn check_stop(&self) -> Result<(), SourceError> {
        if let Some(reason) = &self.fenced {
            return Err(SourceError::Fenced(reason.clone()));
        }
        match self.stop.requested() {
            Some(reason) => Err(SourceError::Stopped(reason)),
            None => Ok(()),
        }
    }

    /// Blocks a halted guest until the timer is due, serial bytes can enter
    /// the FIFO, a disk request completes, or a stop is requested.
    fn wait(&mut self, query: &ExitQuery) -> Result<(), SourceError> {
        loop {
            self.check_stop()?;
            if (query.net_rx_room > 0 && !self.frames.is_empty()) || !self.completions.is_empty() {
                return Ok(());
            }
            // Serial bytes wait for the line's pace, like the timer.
            let serial_due =
                (query.serial_room > 0 && !self.backlog.is_empty()).then(|| self.line.next_ns());
            let deadline = match (query.timer_deadline_ns, serial_due) {
                (Some(timer), Some(serial)) => Some(timer.min(serial)),
                (timer, serial) => timer.or(serial),
            };
            let message = match deadline {
                Some(deadline) => {
                    let timeout = self.clock.until(deadline);
                    if timeout.is_zero() {
                        return Ok(());
                    }
                    match self.input.recv_timeout(timeout) {
                        Ok(message) => message,
                        Err(RecvTimeoutError::Timeout) => return Ok(()),
                        Err(RecvTimeoutError::Disconnected) => return Err(SourceError::Deadlock),
                    }
                }
                // Posted receive buffers wait for frames that may come.
                None if !self.serial_open && !query.io_pending && query.net_rx_room == 0 => {
                    return Err(SourceError::Deadlock);
                }
                None => self.input.recv().map_err(|_| SourceError::Deadlock)?,
            };
            self.take(message);
        }
    }

    fn now_ns(&mut self) -> u64 {
        self.last_ns = self.last_ns.max(self.clock.now_ns());
        self.last_ns
    }
}

impl EventSource for LiveSource {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        self.check_stop()?;
        // What has arrived by now, not what keeps arriving while we take
        // it: a busy input must never hold the guest at one exit.
        for _ in 0..self.input.len() {
            match self.input.try_recv() {
                Ok(message) => self.take(message),
                Err(_) => break,
            }
        }
        if query.exit == 0 {
            events.push(Event::WallClock {
                unix_ns: self.clock.wall_clock_at_boot(),
            });
        }
        if query.halted {
            self.wait(query)?;
        }
        let now = self.now_ns();
        let timer_due = query
            .timer_deadline_ns
            .is_some_and(|deadline| now >= deadline);
        if query.needs_time || timer_due {
            events.push(Event::Time { ns: now });
        }
        if query.msr_read == Some(MSR_TSC) {
            // The virtual TSC runs at 1 GHz: it reads virtual nanoseconds.
            events.push(Event::MsrRead {
                index: MSR_TSC,
                value: now,
            });
        }
        let n = self.line.take(now, query.serial_room, self.backlog.len());
        if n > 0 {
            events.push(Event::SerialIn(self.backlog.drain(..n).collect()));
            self.window.closed(n);
        }
        events.append(&mut self.completions);
        let n = query.net_rx_room.min(self.frames.len());
        for frame in self.frames.drain(..n) {
            if let Some(received) = &self.received {
                received.rx_frames.inc();
                received.rx_bytes.inc_by(frame.len() as u64);
            }
            events.push(Event::NetRx(frame));
        }
        Ok(())
    }

    fn exit_done(&mut self, _: &ExitDone<'_>) -> Result<(), SourceError> {
        Ok(())
    }

    fn state(&mut self, _: u64, _: StateDigest) -> Result<(), SourceError> {
        Ok(())
    }

    fn end(&mut self, _: &End) -> Result<(), SourceError> {
        Ok(())
    }
}
