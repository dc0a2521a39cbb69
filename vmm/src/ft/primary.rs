//! The primary: runs the guest on this host's inputs, streams every input
//! to the backup, holds outputs until the backup has them, and, when the
//! backup is lost, goes on alone only after winning the go-live flag.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ft_logging::channel::{FromBackup, LogSender, Lost, Released};
use ft_logging::{
    Encoder, End, Event, EventSource, ExitDone, ExitQuery, Record, SourceError, StateDigest,
    Stream, StreamDigest,
};
use shared_disk::{Arbiter, Outcome};
use tracing::info;

use super::OutputGate;
use crate::host::{HostInput, LiveSource, StopSignal};
use crate::monitor::{Event as Report, Monitor, Role, Stats};

/// Pending log bytes that make a batch go out without waiting for a reason.
const BATCH_BYTES: usize = 16 << 10;
/// Exits after which pending records go out anyway, to bound the lag.
const BATCH_EXITS: u64 = 256;
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

const FENCED_REASON: &str = "this primary lost its backup and the go-live flag: it halts";

const PAIRED: u8 = 0;
const SOLO: u8 = 1;
const FENCED: u8 = 2;

/// What the thread reading the backup's messages tells the vCPU thread.
#[derive(Debug, Default)]
pub struct PairStatus {
    acked: AtomicU64,
    backup_ns: AtomicU64,
    mode: AtomicU8,
    changed: (Mutex<()>, Condvar),
}

impl PairStatus {
    fn notify(&self) {
        let _guard = self.changed.0.lock();
        self.changed.1.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.changed.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.changed.1.wait_timeout(guard, timeout);
    }

    fn mode(&self) -> u8 {
        self.mode.load(Ordering::SeqCst)
    }
}

/// Everything the watcher needs to decide about a lost backup.
#[derive(Debug)]
pub struct FlagClaim {
    /// The go-live flag.
    pub arbiter: Arbiter,
    /// The generation the pair formed at.
    pub generation: u64,
    /// This side's name in the flag.
    pub owner: String,
}

/// Starts the thread that reads the backup's messages: it releases outputs
/// as acknowledgements arrive, records the backup's progress, and on losing
/// the backup takes the go-live flag before letting the primary go on.
pub fn watch_backup<W: Write + Send + 'static>(
    from_backup: Receiver<FromBackup>,
    gate: Arc<OutputGate<W>>,
    status: Arc<PairStatus>,
    claim: FlagClaim,
    stop: Arc<StopSignal>,
    wake: Sender<HostInput>,
    monitor: Arc<Monitor>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("backup-watch".into())
        .spawn(move || {
            for message in from_backup {
                match message {
                    FromBackup::Ack { through_exit } => {
                        status.acked.fetch_max(through_exit, Ordering::SeqCst);
                        if let Err(error) = gate.ack(through_exit) {
                            tracing::error!(%error, "cannot write the console");
                        }
                    }
                    FromBackup::Progress { virtual_ns, .. } => {
                        status.backup_ns.fetch_max(virtual_ns, Ordering::SeqCst);
                    }
                    FromBackup::Lost(lost) => {
                        monitor.emit(Report::PeerLost {
                            reason: lost.reason.clone(),
                        });
                        monitor.stats().set_paired(false);
                        let mode = claim_flag(&claim, &lost, &stop);
                        if mode == SOLO {
                            monitor.stats().set_role(Role::Alone);
                            if let Err(error) = gate.go_solo() {
                                tracing::error!(%error, "cannot write the console");
                            }
                        }
                        status.mode.store(mode, Ordering::SeqCst);
                        status.notify();
                        if mode == FENCED {
                            // Also reaches a guest waiting in HLT.
                            let _ = wake.send(HostInput::Fenced(FENCED_REASON.into()));
                        }
                        return;
                    }
                }
                status.notify();
            }
        })
}

/// The backup is gone: this primary may go on only with the go-live flag.
fn claim_flag(claim: &FlagClaim, lost: &Lost, stop: &StopSignal) -> u8 {
    let detection = lost.last_heard.elapsed();
    let started = Instant::now();
    let outcome = claim
        .arbiter
        .test_and_set(claim.generation, &claim.owner, &|| {
            stop.requested().is_some()
        });
    let took = started.elapsed().as_millis();
    match outcome {
        Ok(Outcome::Won) => {
            eprintln!(
                "ftvm: primary: the backup is lost ({}); won the go-live flag, going on alone (silent for {} ms, test-and-set {took} ms)",
                lost.reason,
                detection.as_millis()
            );
            SOLO
        }
        Ok(Outcome::Lost(state)) => {
            eprintln!(
                "ftvm: primary: the backup is lost ({}) and the go-live flag is taken ({state}): halting",
                lost.reason
            );
            FENCED
        }
        // Stopping while it waited: the vCPU stops too, fenced or not.
        Err(_) if stop.requested().is_some() => PAIRED,
        Err(error) => {
            eprintln!(
                "ftvm: primary: the backup is lost ({}) and the go-live flag cannot be had: {error}",
                lost.reason
            );
            FENCED
        }
    }
}

/// The log as the primary sends it.
#[derive(Debug)]
struct Outbox {
    sender: LogSender,
    encoder: Encoder,
    pending: Vec<u8>,
    pending_records: u64,
    /// The last progress marker sent: every input through it is sent.
    marker: u64,
    exits_since_batch: u64,
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
    fn push(&mut self, record: &Record) {
        self.encoder.encode(record, &mut self.pending);
        self.pending_records += 1;
    }

    fn send(&mut self, marker: u64, released: Released) {
        let records = std::mem::take(&mut self.pending);
        let bytes = records.len() as u64;
        self.log_bytes.inc_by(bytes);
        self.sender.batch(records, marker, released);
        self.sender.heartbeat_state(marker, released);
        self.in_flight.push_back((marker, bytes));
        self.unacked += bytes;
        self.sent_bytes += bytes;
        self.sent_records += std::mem::take(&mut self.pending_records);
        self.marker = marker;
        self.exits_since_batch = 0;
    }

    fn acknowledged(&mut self, acked: u64) {
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

/// The primary's event source: this host's inputs, each also sent to the
/// backup; the guest stalls when the backup falls too far behind.
#[derive(Debug)]
pub struct PrimarySource<W> {
    live: LiveSource,
    /// None once the primary runs alone.
    outbox: Option<Outbox>,
    gate: Arc<OutputGate<W>>,
    status: Arc<PairStatus>,
    stop: Arc<StopSignal>,
    limits: Limits,
    stats: Arc<Stats>,
    now_ns: u64,
    last_report: Instant,
    started: Instant,
    /// How long flow control has stalled the guest.
    stalled: Duration,
}

impl<W: Write> PrimarySource<W> {
    /// A primary paired with a backup through `sender`; with none, it runs
    /// alone from the start (it has won the go-live flag).
    pub fn new(
        live: LiveSource,
        sender: Option<LogSender>,
        gate: Arc<OutputGate<W>>,
        status: Arc<PairStatus>,
        stop: Arc<StopSignal>,
        limits: Limits,
        stats: Arc<Stats>,
    ) -> Self {
        let outbox = sender.map(|sender| Outbox {
            sender,
            encoder: Encoder::new(),
            pending: Vec::new(),
            pending_records: 0,
            marker: 0,
            exits_since_batch: 0,
            in_flight: VecDeque::new(),
            unacked: 0,
            sent_bytes: 0,
            sent_records: 0,
            input_bytes: 0,
            console: StreamDigest::default(),
            log_bytes: stats.log_bytes.clone(),
        });
        Self {
            live,
            outbox,
            gate,
            status,
            stop,
            limits,
            stats,
            now_ns: 0,
            last_report: Instant::now(),
            started: Instant::now(),
            stalled: Duration::ZERO,
        }
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
            stalled_ms = self.stalled.as_millis(),
            "primary: pair summary"
        );
    }

    /// Follows what the watcher decided about a lost backup.
    fn check_mode(&mut self) -> Result<(), SourceError> {
        match self.status.mode() {
            FENCED => Err(SourceError::Fenced(FENCED_REASON.into())),
            SOLO => {
                if self.outbox.take().is_some() {
                    self.stats.lag_seconds.set(0.0);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Sends pending inputs when something waits for them: output to be
    /// released, a backup to catch up before the guest halts, a full batch.
    fn send_due(&mut self, marker: u64, halted: bool) {
        let Some(outbox) = &mut self.outbox else {
            return;
        };
        outbox.exits_since_batch += 1;
        let output_waiting = self
            .gate
            .last_held_exit()
            .is_some_and(|exit| exit > outbox.marker && exit <= marker);
        let advanced = marker > outbox.marker;
        let due = output_waiting
            || (halted && advanced)
            || outbox.pending.len() >= BATCH_BYTES
            || (outbox.exits_since_batch >= BATCH_EXITS && !outbox.pending.is_empty());
        if due {
            outbox.send(marker, self.gate.released());
        }
    }

    /// Stalls the guest while the backup is too far behind, in log bytes
    /// or in guest time.
    fn throttle(&mut self, marker: u64) -> Result<(), SourceError> {
        let mut stalled_since: Option<Instant> = None;
        loop {
            let Some(outbox) = &mut self.outbox else {
                return Ok(());
            };
            outbox.acknowledged(self.status.acked.load(Ordering::SeqCst));
            let lag = self
                .now_ns
                .saturating_sub(self.status.backup_ns.load(Ordering::SeqCst));
            self.stats.lag_seconds.set(lag as f64 / 1e9);
            if outbox.unacked <= self.limits.buffer_bytes && lag <= self.limits.max_lag_ns {
                if let Some(since) = stalled_since {
                    let stalled = since.elapsed();
                    self.stalled += stalled;
                    self.stats.stall_seconds.inc_by(stalled.as_secs_f64());
                }
                return Ok(());
            }
            stalled_since.get_or_insert_with(Instant::now);
            // The backup can only catch up with what it has.
            if marker > outbox.marker || !outbox.pending.is_empty() {
                outbox.send(marker, self.gate.released());
            }
            if let Some(reason) = self.stop.requested() {
                return Err(SourceError::Stopped(reason));
            }
            self.status.wait(STALL_POLL);
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
                .saturating_sub(self.status.backup_ns.load(Ordering::SeqCst));
            info!(
                exit,
                lag_ms = lag / 1_000_000,
                records = outbox.sent_records,
                bytes = outbox.sent_bytes,
                unacked = outbox.unacked,
                stalled_ms = self.stalled.as_millis(),
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
        self.send_due(marker, query.halted);
        self.throttle(marker)?;
        self.report(query.exit);
        let first = events.len();
        self.live.events(query, events)?;
        for event in &events[first..] {
            if let Event::Time { ns } = event {
                self.now_ns = *ns;
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
            // The output waits for the backup to have this exit: send it now
            // rather than at the next exit, which an emulated guest may
            // reach only milliseconds later; but as Nagle does, only when
            // nothing sent is still unacknowledged, so that a stream of
            // small outputs (a console line a byte at a time) goes out in
            // one batch when the guest next halts.
            if done.output {
                outbox.acknowledged(self.status.acked.load(Ordering::SeqCst));
                if outbox.in_flight.is_empty() {
                    outbox.send(done.exit, self.gate.released());
                }
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
        while self.status.mode() == PAIRED && self.status.acked.load(Ordering::SeqCst) < end.exit {
            if self.stop.requested().is_some() {
                break;
            }
            self.status.wait(STALL_POLL);
        }
        // Released by the acknowledgement, or by going solo.
        while self.status.mode() != FENCED && !self.gate.drain(STALL_POLL) {
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
