//! The primary: runs the guest on this host's inputs, streams every input
//! to its backup, and holds outputs until the backup has them. A live side
//! goes from pair to pair: alone once its backup is lost (after its
//! protector won the go-live flag), paired again from a live transfer's
//! cutover on (see [`cutover`](PrimarySource::cutover)).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ft_logging::channel::{LogSender, Released};
use ft_logging::{
    Encoder, End, Event, EventSource, ExitDone, ExitQuery, Record, SourceError, StateDigest,
    Stream, StreamDigest,
};
use tracing::info;

use super::OutputGate;
use super::transfer::{Cutover, Cutovers, final_part};
use crate::host::{LiveSource, StopSignal};
use crate::machine::Machine;
use crate::monitor::Stats;

/// Pending log bytes that go out even before their exit is complete (the
/// events of a long wait in HLT).
const BATCH_BYTES: usize = 16 << 10;
/// How often a stalled vCPU looks again at acknowledgements and progress.
const STALL_POLL: Duration = Duration::from_millis(20);
/// How often the primary reports its lag.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Flow-control limits: past either, the primary's vCPU stalls.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Log bytes sent but not yet acknowledged.
    pub buffer_bytes: u64,
    /// Guest time the backup's replay may trail the primary by.
    pub max_lag_ns: u64,
}

pub(super) const FENCED_REASON: &str = "this side lost its backup and the go-live flag: it halts";

/// Where one pair is, as its protector decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairMode {
    /// The backup is there.
    Paired,
    /// The backup is gone and this side won the flag: it runs alone.
    Alone,
    /// The backup is gone and the flag is someone else's: this side halts.
    Fenced,
}

/// What the protector, which reads one backup's messages, tells the vCPU
/// thread about that pair.
#[derive(Debug)]
pub struct PairStatus {
    acked: AtomicU64,
    backup_ns: AtomicU64,
    mode: AtomicU8,
    changed: (Mutex<()>, Condvar),
}

impl PairStatus {
    /// A pair whose backup has the log through exit `exit` and stands at
    /// virtual time `backup_ns`.
    pub fn new(exit: u64, backup_ns: u64) -> Arc<Self> {
        Arc::new(Self {
            acked: AtomicU64::new(exit),
            backup_ns: AtomicU64::new(backup_ns),
            mode: AtomicU8::new(PairMode::Paired as u8),
            changed: (Mutex::new(()), Condvar::new()),
        })
    }

    /// The backup acknowledged the log through `exit`.
    pub fn acked(&self, exit: u64) {
        self.acked.fetch_max(exit, Ordering::SeqCst);
        self.notify();
    }

    /// The backup replayed up to virtual time `ns`.
    pub fn progress(&self, ns: u64) {
        self.backup_ns.fetch_max(ns, Ordering::SeqCst);
        self.notify();
    }

    /// The protector decided where the pair is.
    pub fn set_mode(&self, mode: PairMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.notify();
    }

    fn notify(&self) {
        let _guard = self.changed.0.lock();
        self.changed.1.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.changed.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.changed.1.wait_timeout(guard, timeout);
    }

    /// Where the pair is.
    pub fn mode(&self) -> PairMode {
        match self.mode.load(Ordering::SeqCst) {
            0 => PairMode::Paired,
            1 => PairMode::Alone,
            _ => PairMode::Fenced,
        }
    }
}

/// One pair's log as the primary sends it, and the pair's status.
#[derive(Debug)]
struct Outbox {
    sender: LogSender,
    status: Arc<PairStatus>,
    encoder: Encoder,
    pending: Vec<u8>,
    pending_records: u64,
    /// The last progress marker sent: every input through it is sent.
    marker: u64,
    /// (marker, bytes) of batches not yet acknowledged.
    in_flight: VecDeque<(u64, u64)>,
    unacked: u64,
    sent_bytes: u64,
    sent_records: u64,
    /// Bytes from outside the guest: received frames and disk reads, which
    /// the log must carry whatever its encoding.
    input_bytes: u64,
    console: StreamDigest,
    /// Where the bytes sent are counted.
    log_bytes: prometheus::IntCounter,
}

impl Outbox {
    /// The log to a backup that has every input through exit `marker`.
    fn new(
        sender: LogSender,
        status: Arc<PairStatus>,
        marker: u64,
        log_bytes: prometheus::IntCounter,
    ) -> Self {
        Self {
            sender,
            status,
            encoder: Encoder::new(),
            pending: Vec::new(),
            pending_records: 0,
            marker,
            in_flight: VecDeque::new(),
            unacked: 0,
            sent_bytes: 0,
            sent_records: 0,
            input_bytes: 0,
            console: StreamDigest::default(),
            log_bytes,
        }
    }

    fn push(&mut self, record: &Record) {
        self.encoder.encode(record, &mut self.pending);
        self.pending_records += 1;
    }

    /// Sends what is pending with `marker`. The link's heartbeats carry
    /// the marker and release counts of its last batch: no separate
    /// heartbeat update, which would be a second queue item (and wakeup of
    /// the link's writer) at every exit.
    fn send(&mut self, marker: u64, released: Released) {
        let records = std::mem::take(&mut self.pending);
        let bytes = records.len() as u64;
        self.log_bytes.inc_by(bytes);
        self.sender.batch(records, marker, released);
        self.in_flight.push_back((marker, bytes));
        self.unacked += bytes;
        self.sent_bytes += bytes;
        self.sent_records += std::mem::take(&mut self.pending_records);
        self.marker = marker;
    }

    /// Drops what the backup acknowledged from the unacknowledged bytes.
    fn acknowledged(&mut self) {
        let acked = self.status.acked.load(Ordering::SeqCst);
        while self
            .in_flight
            .front()
            .is_some_and(|(marker, _)| *marker <= acked)
        {
            let (_, bytes) = self.in_flight.pop_front().expect("checked non-empty");
            self.unacked -= bytes;
        }
    }
}

/// A live side's event source: this host's inputs, each also sent to the
/// backup while there is one; the guest stalls when the backup falls too
/// far behind.
#[derive(Debug)]
pub struct PrimarySource<W> {
    live: LiveSource,
    /// None while the live side runs alone.
    outbox: Option<Outbox>,
    /// This side lost the flag: it must halt.
    fenced: bool,
    gate: Arc<OutputGate<W>>,
    /// Where the protector asks for a live transfer's cutover.
    cutovers: Arc<Cutovers>,
    stop: Arc<StopSignal>,
    limits: Limits,
    stats: Arc<Stats>,
    now_ns: u64,
    last_report: Instant,
    started: Instant,
}

impl<W: Write> PrimarySource<W> {
    /// A live side running alone, with virtual time at `now_ns`, until
    /// [`pair`](Self::pair) or a cutover.
    pub fn new(
        live: LiveSource,
        gate: Arc<OutputGate<W>>,
        cutovers: Arc<Cutovers>,
        stop: Arc<StopSignal>,
        limits: Limits,
        stats: Arc<Stats>,
        now_ns: u64,
    ) -> Self {
        Self {
            live,
            outbox: None,
            fenced: false,
            gate,
            cutovers,
            stop,
            limits,
            stats,
            now_ns,
            last_report: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Pairs with a backup that has every input through exit `exit`: its
    /// log goes through `sender`, its protector reports through `status`.
    pub fn pair(&mut self, sender: LogSender, status: Arc<PairStatus>, exit: u64) {
        let log_bytes = self.stats.log_bytes.clone();
        self.outbox = Some(Outbox::new(sender, status, exit, log_bytes));
    }

    /// The guest is paused at an exit boundary for the cutover the
    /// protector asked for, if it still does: sends the rest of the VM to
    /// the standby and pairs with it from this exit on. The guest goes on
    /// without waiting for the standby; the output rule holds its outputs
    /// until the standby holds the state and acknowledges the log.
    pub fn cutover(&mut self, machine: &Machine) {
        let paused = Instant::now();
        let Some(request) = self.cutovers.take() else {
            return;
        };
        if self.outbox.is_some() {
            let _ = request.done.send(Err("this side is paired already".into()));
            return;
        }
        let result = final_part(machine, &request, &self.gate).map(|part| {
            let status = PairStatus::new(part.exit, part.now_ns);
            self.now_ns = self.now_ns.max(part.now_ns);
            let released = self.gate.released();
            request.sender.heartbeat_state(part.exit, released);
            self.outbox = Some(Outbox::new(
                request.sender.clone(),
                status.clone(),
                part.exit,
                self.stats.log_bytes.clone(),
            ));
            self.gate.pair(part.exit, part.leased);
            Cutover {
                exit: part.exit,
                status,
                pause: paused.elapsed(),
                bytes: part.bytes,
                pages: part.pages,
                samples: part.samples,
            }
        });
        let _ = request.done.send(result);
    }

    /// The gate this side's outputs go through.
    pub fn gate(&self) -> &Arc<OutputGate<W>> {
        &self.gate
    }

    /// Logs what the pair cost, for people: programs read the metrics.
    fn summarize(&self, outbox: &Outbox) {
        let held = &self.stats.output_hold_seconds;
        let seconds = self.started.elapsed().as_secs_f64();
        info!(
            held_outputs = held.get_sample_count(),
            output_hold_mean_us =
                (held.get_sample_sum() / held.get_sample_count().max(1) as f64 * 1e6) as u64,
            log_bytes = outbox.sent_bytes,
            log_records = outbox.sent_records,
            input_bytes = outbox.input_bytes,
            log_bytes_per_s = (outbox.sent_bytes as f64 / seconds) as u64,
            stalled_ms = self.stats.stall_ms(),
            "primary: pair summary"
        );
    }

    /// Follows what the protector decided about a lost backup.
    fn check_mode(&mut self) -> Result<(), SourceError> {
        match self.outbox.as_ref().map(|outbox| outbox.status.mode()) {
            Some(PairMode::Fenced) => {
                self.fenced = true;
                self.outbox = None;
            }
            Some(PairMode::Alone) => {
                self.outbox = None;
                self.stats.lag_seconds.set(0.0);
            }
            Some(PairMode::Paired) | None => {}
        }
        if self.fenced {
            return Err(SourceError::Fenced(FENCED_REASON.into()));
        }
        Ok(())
    }

    /// Stalls the guest while the backup is too far behind, in log bytes
    /// or in guest time.
    fn throttle(&mut self, marker: u64) -> Result<(), SourceError> {
        // While stalled: the moment up to which the stall is counted. It is
        // counted as it lasts, so the metrics show a long stall at once.
        let mut counted_to: Option<Instant> = None;
        loop {
            if let Some(since) = &mut counted_to {
                let now = Instant::now();
                let stalled = now - *since;
                *since = now;
                self.stats.stall_seconds.inc_by(stalled.as_secs_f64());
            }
            let Some(outbox) = &mut self.outbox else {
                return Ok(());
            };
            outbox.acknowledged();
            let lag = self
                .now_ns
                .saturating_sub(outbox.status.backup_ns.load(Ordering::SeqCst));
            self.stats.lag_seconds.set(lag as f64 / 1e9);
            if outbox.unacked <= self.limits.buffer_bytes && lag <= self.limits.max_lag_ns {
                if counted_to.is_some() {
                    outbox.sender.stalled(false);
                }
                return Ok(());
            }
            if counted_to.is_none() {
                counted_to = Some(Instant::now());
                // A backup replaying at low priority hurries while it holds
                // the guest back (a busy host would otherwise starve it).
                outbox.sender.stalled(true);
            }
            // The backup can only catch up with what it has.
            if marker > outbox.marker || !outbox.pending.is_empty() {
                outbox.send(marker, self.gate.released());
            }
            if let Some(reason) = self.stop.requested() {
                return Err(SourceError::Stopped(reason));
            }
            outbox.status.wait(STALL_POLL);
            self.check_mode()?;
        }
    }

    fn report(&mut self, exit: u64) {
        if self.last_report.elapsed() < REPORT_EVERY {
            return;
        }
        self.last_report = Instant::now();
        if let Some(outbox) = &self.outbox {
            let lag = self
                .now_ns
                .saturating_sub(outbox.status.backup_ns.load(Ordering::SeqCst));
            info!(
                exit,
                lag_ms = lag / 1_000_000,
                records = outbox.sent_records,
                bytes = outbox.sent_bytes,
                unacked = outbox.unacked,
                stalled_ms = self.stats.stall_ms(),
                "primary: paired"
            );
        } else {
            info!(exit, "primary: alone");
        }
    }
}

impl<W: Write> EventSource for PrimarySource<W> {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        self.check_mode()?;
        // Exit k is complete once the next one begins.
        let marker = query.exit.saturating_sub(1);
        self.throttle(marker)?;
        self.report(query.exit);
        let first = events.len();
        self.live.events(query, events)?;
        for event in &events[first..] {
            match event {
                Event::Time { ns } => self.now_ns = *ns,
                Event::DiskDone { request, .. } => self.gate.completed(*request),
                _ => {}
            }
        }
        // A wait in HLT may have outlasted the backup.
        self.check_mode()
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        if let Some(outbox) = &mut self.outbox {
            outbox.console = done.console;
            for event in done.events {
                outbox.input_bytes += match event {
                    Event::NetRx(frame) => frame.len() as u64,
                    Event::DiskDone { data, .. } => data.len() as u64,
                    _ => 0,
                };
                outbox.push(&Record::Event {
                    exit: done.exit,
                    signature: done.signature.value() as u32,
                    event: event.clone(),
                });
            }
            // The backup replays past this exit only once it has it, and an
            // output waits for that too: send it now, not at the next exit,
            // which an emulated guest may reach only after a long computation
            // (the backup would then compute after the primary instead of
            // alongside it, and the primary stall on flow control). A halted
            // exit may take more events: it goes out once an interrupt ends
            // the wait, or in parts if its events pile up.
            if done.complete {
                outbox.send(done.exit, self.gate.released());
            } else if outbox.pending.len() >= BATCH_BYTES {
                outbox.send(outbox.marker, self.gate.released());
            }
        }
        Ok(())
    }

    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError> {
        if let Some(outbox) = &mut self.outbox {
            let console = outbox.console;
            outbox.push(&Record::Output {
                exit,
                stream: Stream::Console,
                digest: console,
            });
            outbox.push(&Record::State { exit, digest });
        }
        Ok(())
    }

    /// Sends the end record and waits for the backup to have it and for
    /// every output to be released; closing the link then says goodbye, so
    /// the backup ends too instead of taking over.
    fn end(&mut self, end: &End) -> Result<(), SourceError> {
        let Some(outbox) = &mut self.outbox else {
            return Ok(());
        };
        outbox.push(&Record::End(end.clone()));
        outbox.send(end.exit, self.gate.released());
        let status = outbox.status.clone();
        while status.mode() == PairMode::Paired && status.acked.load(Ordering::SeqCst) < end.exit {
            if self.stop.requested().is_some() {
                break;
            }
            status.wait(STALL_POLL);
        }
        // Released by the acknowledgement, or by going alone.
        while status.mode() != PairMode::Fenced && !self.gate.drain(STALL_POLL) {
            if self.stop.requested().is_some() {
                break;
            }
        }
        if let Some(outbox) = &self.outbox {
            self.summarize(outbox);
        }
        self.check_mode()
    }
}
