//! The backup: replays the primary's log as it arrives, outputs suppressed
//! and checked, and takes over when the primary is lost: it replays every
//! input it received, wins the go-live flag, and goes on as a full primary
//! on this host's inputs (output gate, flow control, digests, a log for its
//! own next backup), re-emitting the output the primary may never have
//! released. A standby becomes such a backup from the exit its transferred
//! state was taken after.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::Stdout;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ft_logging::channel::{BackupLink, FromPrimary, Released};
use ft_logging::{
    DiskRequest, End, Event, EventSource, ExitDone, ExitQuery, OutputSink, Record, SinkError,
    SourceError, StateDigest,
};
use replay::{RecordStream, ReplaySource};
use shared_disk::{Arbiter, Outcome};
use vm_state::FtState;

use super::{GatedSink, PrimarySource};
use crate::host::StopSignal;
use crate::host::priority::ReplayPriority;
use crate::monitor::{Event as Report, Monitor, Role};

/// Guest time between progress reports to the primary.
const PROGRESS_EVERY_NS: u64 = 5_000_000;

/// What the backup knows of the primary's log and of the primary.
#[derive(Debug, Default)]
pub struct LogStatus {
    /// Every input through this exit has arrived; none until the first
    /// batch: heartbeats carry the marker of exit 0 before exit 0's records
    /// were sent.
    pub through_exit: Option<u64>,
    /// Output the primary has released.
    pub released: Released,
    /// The primary said goodbye: it ended and released everything.
    pub goodbye: bool,
    /// The primary was lost: why, when its last byte came, when it was
    /// declared lost.
    pub lost: Option<(String, Instant, Instant)>,
    /// The latest guest time in the log received.
    pub received_ns: u64,
}

/// The primary's log as a record stream: it waits for records, and once
/// the primary is lost and every received record is replayed, it says the
/// log is exhausted.
#[derive(Debug)]
pub struct ChannelStream {
    from_primary: Receiver<FromPrimary>,
    records: VecDeque<Record>,
    status: Rc<RefCell<LogStatus>>,
    /// Messages piled up: the replay runs at normal priority to catch up.
    hurrying: bool,
    priority: Arc<ReplayPriority>,
    monitor: Arc<Monitor>,
}

/// Messages waiting unreplayed that make the replay hurry (about as many
/// exits: the primary sends each exit as it completes): the primary may
/// soon stall on flow control.
const BEHIND_MESSAGES: usize = 8;

impl ChannelStream {
    /// The stream of the messages from `from_primary`, after `early`,
    /// which arrived before the replay started (a standby's, meanwhile it
    /// restored the state).
    pub fn new(
        from_primary: Receiver<FromPrimary>,
        status: Rc<RefCell<LogStatus>>,
        early: Vec<FromPrimary>,
        priority: Arc<ReplayPriority>,
        monitor: Arc<Monitor>,
    ) -> Self {
        let mut records = VecDeque::new();
        for message in early {
            let status = &mut status.borrow_mut();
            receive(message, &mut records, status, &priority, &monitor);
        }
        Self {
            from_primary,
            records,
            status,
            hurrying: false,
            priority,
            monitor,
        }
    }

    /// Replays at low priority while it keeps up, at normal priority while
    /// messages pile up (until none wait), so that the primary is not held
    /// back by flow control for want of CPU here.
    fn pace(&mut self) {
        let waiting = self.from_primary.len();
        let hurry = if self.hurrying {
            waiting > 0
        } else {
            waiting >= BEHIND_MESSAGES
        };
        if hurry != self.hurrying {
            self.hurrying = hurry;
            self.priority.set_behind(hurry);
        }
    }
}

/// Applies one message from the primary to the log and its status.
fn receive(
    message: FromPrimary,
    records: &mut VecDeque<Record>,
    status: &mut LogStatus,
    priority: &ReplayPriority,
    monitor: &Monitor,
) {
    match message {
        FromPrimary::Batch {
            records: batch,
            through_exit,
            released,
            bytes,
        } => {
            monitor.stats().log_bytes.inc_by(bytes);
            let latest_time = batch.iter().rev().find_map(|record| match record {
                Record::Event {
                    event: Event::Time { ns },
                    ..
                } => Some(*ns),
                _ => None,
            });
            status.received_ns = status.received_ns.max(latest_time.unwrap_or(0));
            records.extend(batch);
            status.through_exit = status.through_exit.max(Some(through_exit));
            status.released = status.released.max(released);
        }
        FromPrimary::Heartbeat {
            through_exit,
            released,
        } => {
            if status.through_exit.is_some() {
                status.through_exit = status.through_exit.max(Some(through_exit));
            }
            status.released = status.released.max(released);
        }
        FromPrimary::Goodbye => status.goodbye = true,
        FromPrimary::Pages(_) | FromPrimary::State(_) | FromPrimary::DiskCheck(_) => {
            tracing::warn!("the primary sent part of a VM to a backup that has one; ignored");
        }
        FromPrimary::Lost(lost) => {
            monitor.emit(Report::PeerLost {
                reason: lost.reason.clone(),
            });
            monitor.stats().set_paired(false);
            status.lost = Some((lost.reason, lost.last_heard, Instant::now()));
            // What is left to replay, and going live, is urgent now.
            priority.primary_lost();
        }
    }
}

impl RecordStream for ChannelStream {
    fn next_record(&mut self, exit: u64) -> Result<Option<Record>, SourceError> {
        self.pace();
        loop {
            if let Some(record) = self.records.pop_front() {
                return Ok(Some(record));
            }
            let status = self.status.borrow();
            if status.lost.is_some() || status.goodbye {
                return Err(SourceError::LogExhausted {
                    through_exit: status.through_exit,
                });
            }
            // The primary may be waiting for this backup's progress before
            // it runs on (flow control): never wait for records of exits
            // the log is already complete through.
            if let Some(through_exit) = status.through_exit.filter(|&k| k >= exit) {
                return Err(SourceError::CaughtUp { through_exit });
            }
            drop(status);
            let message = self.from_primary.recv().unwrap_or_else(|_| {
                FromPrimary::Lost(ft_logging::channel::Lost {
                    reason: "the logging channel closed".into(),
                    last_heard: Instant::now(),
                })
            });
            receive(
                message,
                &mut self.records,
                &mut self.status.borrow_mut(),
                &self.priority,
                &self.monitor,
            );
        }
    }
}

/// Output of one stream (console bytes, frames) produced since the
/// primary's release count `base`: what a takeover may have to emit again.
#[derive(Debug)]
struct Unreleased<T> {
    base: u64,
    items: VecDeque<T>,
}

impl<T> Unreleased<T> {
    fn new() -> Self {
        Self {
            base: 0,
            items: VecDeque::new(),
        }
    }

    /// Adds `items`, and drops what the primary released (`released` in all).
    fn extend(&mut self, items: impl IntoIterator<Item = T>, released: u64) {
        self.items.extend(items);
        let done = released
            .saturating_sub(self.base)
            .min(self.items.len() as u64);
        self.items.drain(..done as usize);
        self.base += done;
    }

    /// What the primary may not have released.
    fn take(&mut self, released: u64) -> VecDeque<T> {
        self.extend([], released);
        self.base += self.items.len() as u64;
        std::mem::take(&mut self.items)
    }
}

/// Output the backup produced but the primary may not have released:
/// console bytes and frames kept until the primary says it released them,
/// and disk requests kept until their completion is in the log; emitted
/// (re-issued) at takeover.
#[derive(Debug)]
pub struct Backlog {
    live: bool,
    console: Unreleased<u8>,
    frames: Unreleased<Vec<u8>>,
    /// Disk requests without a completion in the log, by number.
    disk: BTreeMap<u64, DiskRequest>,
    out: GatedSink<Stdout>,
}

impl Backlog {
    /// A backlog whose outputs go, once live, through this host's output
    /// gate.
    pub fn new(out: GatedSink<Stdout>) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            live: false,
            console: Unreleased::new(),
            frames: Unreleased::new(),
            disk: BTreeMap::new(),
            out,
        }))
    }

    /// A standby's backlog: the replay starts where the transferred state
    /// was taken, with `ft`'s output released and its disk requests in
    /// flight.
    pub fn resume(&mut self, ft: &FtState) {
        self.console.base = ft.released_console;
        self.frames.base = ft.released_frames;
        self.disk = ft
            .disk_in_flight
            .iter()
            .map(|request| (request.id, request.clone()))
            .collect();
    }

    /// Emits what the primary may not have released, re-issues every disk
    /// request without a completion, and from now on lets every output out
    /// at once.
    fn go_live(&mut self, released: Released) -> Result<Again, SinkError> {
        let console = Vec::from(self.console.take(released.console));
        self.out.console(0, &console)?;
        self.out.flush()?;
        let frames = self.frames.take(released.frames);
        let again = Again {
            console: console.len(),
            frames: frames.len(),
            disk: self.disk.len(),
        };
        for frame in frames {
            self.out.net(0, frame)?;
        }
        for request in std::mem::take(&mut self.disk).into_values() {
            self.out.disk(0, request)?;
        }
        self.live = true;
        Ok(again)
    }
}

/// What a backup going live emitted again.
#[derive(Debug, Clone, Copy)]
struct Again {
    console: usize,
    frames: usize,
    disk: usize,
}

impl std::fmt::Display for Again {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} console bytes and {} frames emitted again, {} disk requests re-issued",
            self.console, self.frames, self.disk
        )
    }
}

/// The backup's output sink: suppressed into the backlog until live.
#[derive(Debug)]
pub struct BackupSink {
    /// What it keeps until it goes live.
    pub backlog: Rc<RefCell<Backlog>>,
    /// What it knows of the primary's log.
    pub status: Rc<RefCell<LogStatus>>,
}

impl OutputSink for BackupSink {
    fn console(&mut self, exit: u64, bytes: &[u8]) -> Result<(), SinkError> {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.live {
            return backlog.out.console(exit, bytes);
        }
        let released = self.status.borrow().released;
        backlog
            .console
            .extend(bytes.iter().copied(), released.console);
        Ok(())
    }

    fn net(&mut self, exit: u64, frame: Vec<u8>) -> Result<(), SinkError> {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.live {
            return backlog.out.net(exit, frame);
        }
        let released = self.status.borrow().released;
        backlog.frames.extend([frame], released.frames);
        Ok(())
    }

    fn disk(&mut self, exit: u64, request: DiskRequest) -> Result<(), SinkError> {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.live {
            return backlog.out.disk(exit, request);
        }
        backlog.disk.insert(request.id, request);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.live {
            backlog.out.flush()
        } else {
            Ok(())
        }
    }
}

/// How the backup goes live.
pub struct Takeover<'a> {
    /// "backup" or "standby", for messages.
    pub role: &'static str,
    /// The go-live flag.
    pub arbiter: Arbiter,
    /// The generation the pair formed at.
    pub generation: u64,
    /// This side's name in the flag.
    pub owner: String,
    /// Stops the wait for the flag.
    pub stop: Arc<StopSignal>,
    /// The new primary (on this host's inputs, with virtual time resuming
    /// from the given sample), once this side owns the flag.
    pub go_live: Box<dyn FnMut(u64) -> PrimarySource<Stdout> + 'a>,
}

impl std::fmt::Debug for Takeover<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Takeover")
            .field("arbiter", &self.arbiter)
            .field("generation", &self.generation)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Takeover<'_> {
    /// Takes the go-live flag, waiting while the arbiter cannot be reached.
    fn claim(&self) -> Result<(), SourceError> {
        let outcome = self
            .arbiter
            .test_and_set(self.generation, &self.owner, &|| {
                self.stop.requested().is_some()
            })
            .map_err(|error| match self.stop.requested() {
                Some(reason) => SourceError::Stopped(reason),
                None => SourceError::Fenced(format!("{}: no go-live flag: {error}", self.role)),
            })?;
        match outcome {
            Outcome::Won => Ok(()),
            // A standby's live side never moved the flag on to this pair.
            Outcome::Lost(state) if state.generation < self.generation => {
                Err(SourceError::Unpaired(format!(
                    "{}: the live side was lost before the new pair formed (the go-live flag shows {state}): this side never goes live",
                    self.role
                )))
            }
            Outcome::Lost(state) => Err(SourceError::Fenced(format!(
                "{}: the primary is lost but the go-live flag is taken ({state}): this side exits",
                self.role
            ))),
        }
    }
}

/// The backup's event source: the primary's log while it lasts, this
/// host's inputs after a takeover.
#[derive(Debug)]
pub struct BackupSource<'a> {
    replay: ReplaySource<ChannelStream>,
    status: Rc<RefCell<LogStatus>>,
    link: BackupLink,
    takeover: Takeover<'a>,
    backlog: Rc<RefCell<Backlog>>,
    live: Option<PrimarySource<Stdout>>,
    now_ns: u64,
    reported_ns: u64,
    priority: Arc<ReplayPriority>,
    monitor: Arc<Monitor>,
}

/// Where a backup's replay starts: at the guest's boot, or (a standby)
/// after the exit its transferred state was taken after.
#[derive(Debug, Default)]
pub struct Start {
    /// The exit the state was taken after, and virtual time there.
    pub after: Option<(u64, u64)>,
    /// Messages from the primary that arrived before the replay started.
    pub early: Vec<FromPrimary>,
}

impl<'a> BackupSource<'a> {
    /// The backup's source: the log from `link`, from `start` on, going
    /// live by `takeover`.
    pub fn new(
        link: BackupLink,
        status: Rc<RefCell<LogStatus>>,
        backlog: Rc<RefCell<Backlog>>,
        takeover: Takeover<'a>,
        start: Start,
        monitor: Arc<Monitor>,
    ) -> Self {
        if let Some((exit, _)) = start.after {
            // The state holds every input through its exit.
            status.borrow_mut().through_exit = Some(exit);
        }
        // Made on the replay's thread, which it now puts at low priority.
        let priority = Arc::new(ReplayPriority::of_this_thread());
        link.on_primary_stall({
            let priority = priority.clone();
            move |stalled| priority.set_primary_stalled(stalled)
        });
        let stream = ChannelStream::new(
            link.from_primary(),
            status.clone(),
            start.early,
            priority.clone(),
            monitor.clone(),
        );
        let (replay, now_ns) = match start.after {
            None => (ReplaySource::new(stream, true), 0),
            Some((exit, now_ns)) => (ReplaySource::resume_after(stream, true, exit), now_ns),
        };
        Self {
            replay,
            status,
            link,
            takeover,
            backlog,
            live: None,
            now_ns,
            reported_ns: now_ns,
            priority,
            monitor,
        }
    }

    /// Whether this backup has gone live.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The primary this backup has become, once live.
    pub fn live_mut(&mut self) -> Option<&mut PrimarySource<Stdout>> {
        self.live.as_mut()
    }

    /// The primary's end record, once the replay has come to it.
    pub fn primary_end(&self) -> Option<&End> {
        self.replay.recorded_end()
    }

    /// The primary is lost and every input it sent is replayed: go live.
    fn take_over(&mut self, exit: u64) -> Result<(), SourceError> {
        let exhausted = Instant::now();
        let (reason, last_heard, declared) =
            self.status.borrow().lost.clone().unwrap_or_else(|| {
                (
                    "the primary ended without its end record".into(),
                    exhausted,
                    exhausted,
                )
            });
        self.takeover.claim()?;
        let discarded = &self.monitor.stats().net.discarded_frames;
        let discarded_before = discarded.get();
        let live = (self.takeover.go_live)(self.now_ns);
        let discarded_frames = discarded.get() - discarded_before;
        let again = self.emit_unreleased()?;
        self.live = Some(live);
        let ms = |d: Duration| d.as_millis() as u64;
        let (detection, drain, golive) = (
            ms(declared.saturating_duration_since(last_heard)),
            ms(exhausted.saturating_duration_since(declared)),
            ms(exhausted.elapsed()),
        );
        eprintln!(
            "ftvm: {}: the primary is lost ({reason}); live from exit {exit}: detection {detection} ms, draining {drain} ms, go-live {golive} ms; {again}",
            self.takeover.role,
        );
        let stats = self.monitor.stats();
        stats.takeovers.inc();
        stats.set_role(Role::Alone);
        stats.lag_seconds.set(0.0);
        self.monitor.emit(Report::Live {
            exit,
            detection_ms: detection,
            drain_ms: drain,
            golive_ms: golive,
            reemitted_console_bytes: again.console as u64,
            reemitted_frames: again.frames as u64,
            reissued_requests: again.disk as u64,
            discarded_frames,
        });
        Ok(())
    }

    /// Emits the output the primary may not have released.
    fn emit_unreleased(&self) -> Result<Again, SourceError> {
        let released = self.status.borrow().released;
        self.backlog
            .borrow_mut()
            .go_live(released)
            .map_err(SourceError::Output)
    }

    /// After the guest ended in replay: if the primary did not say goodbye,
    /// it may not have released its last output, so this backup claims the
    /// flag and emits it (at least once). The guest never runs here, so
    /// this is no `live`: the stream says the peer was lost, then the end.
    pub fn finish_replay(&mut self, timeout: Duration) -> Result<(), SourceError> {
        if self.live.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let from_primary = self.link.from_primary();
        loop {
            let status = self.status.borrow();
            if status.goodbye {
                return Ok(());
            }
            if status.lost.is_some() {
                break;
            }
            drop(status);
            match from_primary.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(message) => receive(
                    message,
                    &mut VecDeque::new(),
                    &mut self.status.borrow_mut(),
                    &self.priority,
                    &self.monitor,
                ),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        if self.status.borrow().lost.is_none() {
            self.monitor.emit(Report::PeerLost {
                reason: "the primary ended without saying goodbye".into(),
            });
            self.monitor.stats().set_paired(false);
        }
        self.takeover.claim()?;
        let again = self.emit_unreleased()?;
        eprintln!(
            "ftvm: backup: the primary ended but was lost before releasing its output; {again}"
        );
        Ok(())
    }
}

impl EventSource for BackupSource<'_> {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        if let Some(live) = &mut self.live {
            return live.events(query, events);
        }
        let first = events.len();
        match self.replay.events(query, events) {
            Err(SourceError::LogExhausted { .. }) => {
                events.truncate(first);
                self.take_over(query.exit)?;
                return self.events(query, events);
            }
            result => result?,
        }
        for event in &events[first..] {
            match event {
                Event::Time { ns } => {
                    self.now_ns = *ns;
                    let received = self.status.borrow().received_ns;
                    let lag = received.saturating_sub(*ns);
                    self.monitor.stats().lag_seconds.set(lag as f64 / 1e9);
                }
                Event::DiskDone { request, .. } => {
                    self.backlog.borrow_mut().disk.remove(request);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        if let Some(live) = &mut self.live {
            return live.exit_done(done);
        }
        self.replay.exit_done(done)?;
        if self.now_ns >= self.reported_ns + PROGRESS_EVERY_NS {
            self.reported_ns = self.now_ns;
            self.link.progress(done.exit, self.now_ns);
        }
        Ok(())
    }

    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError> {
        match &mut self.live {
            Some(live) => live.state(exit, digest),
            // The primary was lost before it sent this exit's digests:
            // nothing to check them against; the takeover comes at the next
            // exit.
            None => unless_lost(self.replay.state(exit, digest)),
        }
    }

    fn end(&mut self, end: &End) -> Result<(), SourceError> {
        match &mut self.live {
            Some(live) => live.end(end),
            // The primary was lost after the guest's last exit but before
            // it sent its end record: nothing to compare the end with;
            // `finish_replay` claims the flag and emits what the primary
            // may not have released.
            None => unless_lost(self.replay.end(end)),
        }
    }
}

/// A check against the log that found the primary lost before it sent
/// what to check against passes: there is nothing to compare.
fn unless_lost(result: Result<(), SourceError>) -> Result<(), SourceError> {
    match result {
        Err(SourceError::LogExhausted { .. }) => Ok(()),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use ft_logging::channel::{Lost, Released};
    use ft_logging::{Event, Record};

    use super::*;

    fn stream(messages: Vec<FromPrimary>) -> ReplaySource<ChannelStream> {
        let (to_backup, from_primary) = crossbeam_channel::unbounded();
        for message in messages {
            to_backup.send(message).unwrap();
        }
        let status = Rc::new(RefCell::new(LogStatus::default()));
        ReplaySource::new(
            ChannelStream::new(
                from_primary,
                status,
                Vec::new(),
                Arc::new(ReplayPriority::unmanaged()),
                Monitor::off(),
            ),
            true,
        )
    }

    fn lost() -> FromPrimary {
        FromPrimary::Lost(Lost {
            reason: "killed".into(),
            last_heard: Instant::now(),
        })
    }

    fn boot() -> ExitQuery {
        ExitQuery {
            needs_time: true,
            ..ExitQuery::default()
        }
    }

    #[test]
    fn a_primary_lost_before_its_first_batch_leaves_even_exit_0_to_the_backup() {
        // Heartbeats go out from the start, carrying the marker of exit 0
        // before exit 0's records were ever sent.
        let heartbeat = FromPrimary::Heartbeat {
            through_exit: 0,
            released: Released::default(),
        };
        let mut replay = stream(vec![heartbeat, lost()]);
        let result = replay.events(&boot(), &mut Vec::new());
        assert!(
            matches!(result, Err(SourceError::LogExhausted { .. })),
            "the backup must go live at exit 0, not find a divergence: {result:?}"
        );
    }

    #[test]
    fn only_what_the_primary_may_not_have_released_is_kept() {
        let mut console = Unreleased::new();
        console.extend(*b"tick 1\n", 0);
        console.extend(*b"tick 2\n", 10);
        assert_eq!(Vec::from(console.take(10)), b"k 2\n");
        // What was taken counts as emitted: bytes 14.. come next.
        console.extend(*b"tick 3\n", 16);
        assert_eq!(Vec::from(console.take(16)), b"ck 3\n");
        // A stale release count drops nothing.
        console.extend(*b"x", 3);
        assert_eq!(Vec::from(console.take(3)), b"x");
    }

    #[test]
    fn the_digests_of_an_exit_are_waited_for_after_its_marker() {
        use ft_logging::{StateDigest, Stream, StreamDigest};
        // An exit with output sends its events at once (with its marker);
        // its digests, taken after the exit, follow in a later batch.
        let marker = FromPrimary::Batch {
            records: Vec::new(),
            through_exit: 5,
            released: Released::default(),
            bytes: 0,
        };
        let digest = StateDigest {
            registers: 1,
            memory: 2,
        };
        let digests = FromPrimary::Batch {
            records: vec![
                Record::Output {
                    exit: 5,
                    stream: Stream::Console,
                    digest: StreamDigest::default(),
                },
                Record::State { exit: 5, digest },
            ],
            through_exit: 5,
            released: Released::default(),
            bytes: 40,
        };
        let mut replay = stream(vec![marker, digests]);
        replay.state(5, digest).unwrap();
    }

    #[test]
    fn the_end_record_is_waited_for_after_the_last_exits_marker() {
        use ft_logging::{End, EndReason};
        // The last exit is complete, and sent, before the primary's end
        // record follows in a later batch.
        let marker = FromPrimary::Batch {
            records: Vec::new(),
            through_exit: 5,
            released: Released::default(),
            bytes: 0,
        };
        let end = End {
            exit: 5,
            signature: 0,
            reason: EndReason::GuestExit(0),
            status: 0,
            console: Default::default(),
            state: None,
        };
        let last = FromPrimary::Batch {
            records: vec![Record::End(end.clone())],
            through_exit: 5,
            released: Released::default(),
            bytes: 30,
        };
        let mut replay = stream(vec![marker, last]);
        replay.end(&end).unwrap();
    }

    #[test]
    fn a_complete_exit_is_replayed_without_waiting_for_more() {
        let time = Record::Event {
            exit: 0,
            signature: 0,
            event: Event::Time { ns: 5 },
        };
        let batch = FromPrimary::Batch {
            records: vec![time],
            through_exit: 0,
            released: Released::default(),
            bytes: 14,
        };
        // Nothing follows: a replay that waited for a later record would
        // block here forever.
        let mut replay = stream(vec![batch]);
        let mut events = Vec::new();
        replay.events(&boot(), &mut events).unwrap();
        assert_eq!(events, vec![Event::Time { ns: 5 }]);
    }
}
