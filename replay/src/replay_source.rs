//! The replaying event source: the events come from a log (a trace file,
//! or a primary over the logging channel), and what the guest does is
//! checked against what the logged guest did.

use std::io::Read;

use ft_logging::{
    End, Event, EventSource, ExitDone, ExitQuery, Record, SourceError, StateDigest, Stream,
    StreamDigest,
};

use crate::TraceReader;
use crate::describe;

/// Where a replay's records come from.
pub trait RecordStream {
    /// The next record, waiting for it if it has not arrived yet; `None`
    /// after the End record. A stream whose source went away returns
    /// [`SourceError::LogExhausted`] once it has returned every record it
    /// got, and again on every later call. The replay is at exit `exit`: a
    /// stream that has every record through it may return
    /// [`SourceError::CaughtUp`] instead of waiting for the next one.
    fn next_record(&mut self, exit: u64) -> Result<Option<Record>, SourceError>;
}

impl<R: Read> RecordStream for TraceReader<R> {
    fn next_record(&mut self, _exit: u64) -> Result<Option<Record>, SourceError> {
        TraceReader::next_record(self).map_err(|error| SourceError::Log(error.to_string()))
    }
}

/// Replays a log. Every Event record is returned at its exit, and the exit
/// signature after that exit is compared with the record's. In verify mode
/// every console and state digest must be checked through
/// [`state`](EventSource::state), and the end is compared with the
/// recorded one.
///
/// The core must call `state(k, ..)` after the last `exit_done` of exit k,
/// as the recorder saw it.
#[derive(Debug)]
pub struct ReplaySource<S> {
    stream: S,
    verify: bool,
    /// The next record of the trace, read ahead.
    next: Option<Record>,
    /// The signature of the events returned last, until `exit_done`.
    expected: Option<u32>,
    /// The last exit whose signature matched the trace's.
    last_match: Option<u64>,
    /// The console's digest after the last exit.
    console: StreamDigest,
    recorded_end: Option<End>,
    /// The replay passed the point where the recorded run ended.
    log_ended: bool,
    /// The exit the replay is at.
    exit: u64,
    /// The replay starts from a state taken after this exit: the log's
    /// records of exits up to it are already in that state.
    resumed_after: Option<u64>,
}

impl<S: RecordStream> ReplaySource<S> {
    /// A replay of `stream` from its start; `verify` checks every digest and the end.
    pub fn new(stream: S, verify: bool) -> Self {
        Self {
            stream,
            verify,
            next: None,
            expected: None,
            last_match: None,
            console: StreamDigest::default(),
            recorded_end: None,
            log_ended: false,
            exit: 0,
            resumed_after: None,
        }
    }

    /// Replays the log from a state taken after exit `exit` of the logged
    /// run (a checkpoint, a transferred VM): the log's events and digests
    /// of exits up to `exit` are passed over, as that state holds them.
    pub fn resume_after(stream: S, verify: bool, exit: u64) -> Self {
        Self {
            exit,
            resumed_after: Some(exit),
            ..Self::new(stream, verify)
        }
    }

    /// The recorded run's end, once the replay has come to it: after
    /// [`end`](EventSource::end) succeeded or an exit returned
    /// [`SourceError::LogEnded`].
    pub fn recorded_end(&self) -> Option<&End> {
        self.recorded_end.as_ref()
    }

    fn peek(&mut self) -> Result<&Record, SourceError> {
        let record = match self.next.take() {
            Some(record) => record,
            None => loop {
                let record = self
                    .stream
                    .next_record(self.exit)?
                    // The stream returns the End record before `None`, and
                    // the End record is never consumed.
                    .ok_or_else(|| SourceError::Log("the log has no end record".into()))?;
                let before_start = self
                    .resumed_after
                    .is_some_and(|start| record.exit() <= start);
                // Checkpoints are for seeking, not for replaying.
                if matches!(record, Record::End(_)) || !(before_start || record.is_checkpoint()) {
                    break record;
                }
            },
        };
        if let Record::End(end) = &record {
            self.recorded_end.get_or_insert_with(|| end.clone());
        }
        Ok(self.next.insert(record))
    }

    /// Passes over the digests of exits before `exit`: in verify mode they
    /// must have been checked already.
    fn pass_digests_before(&mut self, exit: u64) -> Result<(), SourceError> {
        let verify = self.verify;
        loop {
            let record = match self.peek() {
                Err(SourceError::LogExhausted { .. } | SourceError::CaughtUp { .. }) => {
                    return Ok(());
                }
                other => other?,
            };
            match record {
                digest @ (Record::Output { exit: j, .. } | Record::State { exit: j, .. })
                    if *j < exit =>
                {
                    if verify {
                        return Err(unchecked(exit, digest));
                    }
                    self.next = None;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Takes the Event records of exit `exit` into `events`.
    fn take_events(&mut self, exit: u64, events: &mut Vec<Event>) -> Result<(), SourceError> {
        loop {
            self.pass_digests_before(exit)?;
            let record = match self.peek() {
                // A log complete through this exit has no more of its events.
                Err(
                    SourceError::LogExhausted {
                        through_exit: Some(through_exit),
                    }
                    | SourceError::CaughtUp { through_exit },
                ) if exit <= through_exit => {
                    return Ok(());
                }
                other => other?,
            };
            match record {
                Record::Event { exit: j, event, .. } if *j < exit => {
                    let detail = format!(
                        "the log has {} at exit {j}, which the replay passed",
                        describe::event_kind(event)
                    );
                    return Err(divergence(exit, detail));
                }
                Record::Event { exit: j, .. } if *j == exit => {
                    if let Some(Record::Event {
                        signature, event, ..
                    }) = self.next.take()
                    {
                        if self.expected.is_some_and(|expected| expected != signature) {
                            return Err(SourceError::Log(format!(
                                "the log's events at exit {exit} carry different exit signatures"
                            )));
                        }
                        self.expected = Some(signature);
                        events.push(event);
                    }
                }
                Record::End(end) if end.exit < exit => {
                    self.log_ended = true;
                    return Err(SourceError::LogEnded);
                }
                _ => return Ok(()),
            }
        }
    }

    /// Checks that the events of exit `query.exit` satisfy its query.
    fn check_query(&mut self, query: &ExitQuery, events: &[Event]) -> Result<(), SourceError> {
        let exit = query.exit;
        if query.halted && events.is_empty() {
            if matches!(self.peek()?, Record::End(end) if end.exit == exit) {
                self.log_ended = true;
                return Err(SourceError::LogEnded);
            }
            let detail = format!(
                "the guest halted waiting for an event, while the log's next record is {}",
                describe::record(self.peek()?)
            );
            return Err(divergence(exit, detail));
        }
        let missing = if query.needs_time && !events.iter().any(|e| matches!(e, Event::Time { .. }))
        {
            Some("the access reads a clock and the log has no time sample".to_owned())
        } else {
            query.msr_read.and_then(|index| {
                let found = events
                    .iter()
                    .any(|e| matches!(e, Event::MsrRead { index: i, .. } if *i == index));
                (!found).then(|| {
                    format!("the guest read MSR {index:#x} and the log has no value for it")
                })
            })
        };
        if let Some(missing) = missing {
            let next = match self.peek() {
                Ok(record) => describe::record(record),
                Err(SourceError::LogExhausted { .. }) => "nothing: its source is gone".to_owned(),
                Err(error) => return Err(error),
            };
            let detail = format!("{missing} at this exit (its next record is {next})");
            return Err(divergence(exit, detail));
        }
        let serial: usize = events
            .iter()
            .map(|event| match event {
                Event::SerialIn(bytes) => bytes.len(),
                _ => 0,
            })
            .sum();
        if serial > query.serial_room {
            let detail = format!(
                "the log has {serial} serial bytes here but the UART's receive FIFO has room for {}",
                query.serial_room
            );
            return Err(divergence(exit, detail));
        }
        let frames = events
            .iter()
            .filter(|event| matches!(event, Event::NetRx(_)))
            .count();
        if frames > query.net_rx_room {
            let detail = format!(
                "the log has {frames} received frames here but the network card has {} receive buffers",
                query.net_rx_room
            );
            return Err(divergence(exit, detail));
        }
        Ok(())
    }
}

impl<S: RecordStream> EventSource for ReplaySource<S> {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        self.exit = query.exit;
        let first = events.len();
        self.take_events(query.exit, events)?;
        self.check_query(query, &events[first..])
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        self.console = done.console;
        let Some(expected) = self.expected.take() else {
            return Ok(());
        };
        let replayed = done.signature.value() as u32;
        if replayed != expected {
            let last = match self.last_match {
                Some(exit) => format!("the last matching exit was {exit}"),
                None => "no earlier exit with inputs matched".to_owned(),
            };
            let detail = format!(
                "exit signature {replayed:#010x} differs from the log's {expected:#010x}; {last}"
            );
            return Err(divergence(done.exit, detail));
        }
        self.last_match = Some(done.exit);
        Ok(())
    }

    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError> {
        // The log's digests of exit k may come after its events are
        // complete (after the progress marker of k): a stream may only say
        // it has caught up once the log is complete through exit k + 1.
        self.exit = exit + 1;
        self.pass_digests_before(exit)?;
        let console = match self.peek()? {
            Record::Output {
                exit: j,
                stream: Stream::Console,
                digest,
            } if *j == exit => *digest,
            other => {
                let detail = format!(
                    "the log has no console digest for this exit; its next record is {}",
                    describe::record(other)
                );
                return Err(divergence(exit, detail));
            }
        };
        self.next = None;
        let state = match self.peek()? {
            Record::State { exit: j, digest } if *j == exit => *digest,
            other => {
                let detail = format!(
                    "the log has no state digest for this exit; its next record is {}",
                    describe::record(other)
                );
                return Err(divergence(exit, detail));
            }
        };
        self.next = None;
        let mut differences: Vec<String> =
            compare_console(self.console, console).into_iter().collect();
        differences.extend(compare_state(digest, state));
        if differences.is_empty() {
            Ok(())
        } else {
            Err(divergence(exit, differences.join("; ")))
        }
    }

    fn end(&mut self, end: &End) -> Result<(), SourceError> {
        // The end record comes after the last exit is complete (after its
        // progress marker), as digests do.
        self.exit = end.exit + 1;
        let verify = self.verify;
        let recorded = loop {
            match self.peek()? {
                Record::End(recorded) => break recorded.clone(),
                Record::Event { exit: j, event, .. } => {
                    let detail = format!(
                        "the replay ended after exit {}, but the log has {} at exit {j}",
                        end.exit,
                        describe::event_kind(event)
                    );
                    return Err(divergence(end.exit, detail));
                }
                digest @ (Record::Output { .. } | Record::State { .. }) => {
                    if verify {
                        return Err(unchecked(end.exit, digest));
                    }
                    self.next = None;
                }
                Record::CheckpointPages { .. } | Record::Checkpoint { .. } => {
                    unreachable!("peek passes over checkpoints")
                }
            }
        };
        // After `LogEnded` the replay ended where the recording did, for the
        // recorded reason: there is nothing of its own to compare.
        if !self.verify || self.log_ended {
            return Ok(());
        }
        let differences = compare_ends(end, &recorded);
        if differences.is_empty() {
            Ok(())
        } else {
            Err(divergence(end.exit, differences.join("; ")))
        }
    }
}

fn divergence(exit: u64, detail: String) -> SourceError {
    SourceError::Divergence { exit, detail }
}

/// A digest the replay passed without checking it, in verify mode.
fn unchecked(exit: u64, digest: &Record) -> SourceError {
    let detail = format!(
        "the log has {} that the replay did not check",
        describe::record(digest)
    );
    divergence(exit, detail)
}

/// What differs between the replay's end and the recorded one.
fn compare_ends(replayed: &End, recorded: &End) -> Vec<String> {
    let mut differences = Vec::new();
    if replayed.exit != recorded.exit {
        differences.push(format!(
            "exits: replayed {} vs recorded {}",
            replayed.exit, recorded.exit
        ));
    }
    if replayed.signature != recorded.signature {
        differences.push(format!(
            "exit signature: replayed {:#018x} vs recorded {:#018x}",
            replayed.signature, recorded.signature
        ));
    }
    if replayed.reason != recorded.reason {
        differences.push(format!(
            "end: replayed \"{}\" vs recorded \"{}\"",
            replayed.reason, recorded.reason
        ));
    }
    if replayed.status != recorded.status {
        differences.push(format!(
            "exit status: replayed {} vs recorded {}",
            replayed.status, recorded.status
        ));
    }
    differences.extend(compare_console(replayed.console, recorded.console));
    if let (Some(replayed), Some(recorded)) = (replayed.state, recorded.state) {
        differences.extend(compare_state(replayed, recorded));
    }
    differences
}

fn compare_console(replayed: StreamDigest, recorded: StreamDigest) -> Option<String> {
    if replayed.bytes != recorded.bytes {
        Some(format!(
            "console output: replayed {} bytes vs recorded {} bytes",
            replayed.bytes, recorded.bytes
        ))
    } else if replayed.digest != recorded.digest {
        Some(format!(
            "console output: the replayed {} bytes differ from the recorded ones",
            replayed.bytes
        ))
    } else {
        None
    }
}

fn compare_state(replayed: StateDigest, recorded: StateDigest) -> Vec<String> {
    let mut differences = Vec::new();
    if replayed.registers != recorded.registers {
        differences.push(format!(
            "registers: replayed digest {:#018x} vs recorded {:#018x}",
            replayed.registers, recorded.registers
        ));
    }
    if replayed.memory != recorded.memory {
        differences.push(format!(
            "memory: replayed digest {:#018x} vs recorded {:#018x}",
            replayed.memory, recorded.memory
        ));
    }
    differences
}
