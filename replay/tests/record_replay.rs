//! The recorder and the replaying source, driven by ftvm's real
//! deterministic core (`ftvm-core`'s exit handler and platform) on
//! synthetic exits: a small program of port accesses, MSR reads and a halt
//! whose exits depend on the inputs the core receives.

use std::path::Path;

use ft_logging::{
    End, EndReason, Event, EventSource, ExitDone, ExitQuery, Header, NullSink, Record, SourceError,
    StateDigest, StopReason,
};
use ftvm_core::devices::pic::LINUX_INIT;
use ftvm_core::effect::GuestEnd;
use ftvm_core::exit_handler::{Access, CoreError, ExitHandler, Flow, Step, VmEnd};
use ftvm_core::memory::GuestRam;
use ftvm_core::platform::{Devices, Platform};
use replay::{Recorder, ReplaySource, TraceReader, TraceWriter};
use sha2::{Digest, Sha256};
use vm_memory::GuestAddress;

/// Exits of a full run.
const EXITS: u64 = 100;
/// The guest halts here and the host wakes it in two batches of events.
const HALT_EXIT: u64 = 40;
const DIGEST_INTERVAL: u64 = 25;
/// The UART's receive FIFO, once the program has enabled it.
const FIFO: usize = 16;
const IF: u64 = 1 << 9;
const COM1: u16 = 0x3f8;
const POST: u16 = 0x80;
/// PIT channel 0's period in ticks: about a millisecond.
const PERIOD: u16 = 1193;

/// The program's first exits: the UART's FIFO and RTS (so the line takes
/// input), the PICs as Linux sets them, then the PIT's channel 0 in mode 2.
fn setup() -> impl Iterator<Item = (u16, u8)> {
    [(COM1 + 2, 0x01), (COM1 + 4, 0x02)]
        .into_iter()
        .chain(LINUX_INIT)
        .chain([
            (0x43, 0x34),
            (0x40, PERIOD as u8),
            (0x40, (PERIOD >> 8) as u8),
        ])
}

/// What the program does at one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Out(u16, u8),
    /// Reads PIT channel 0: needs a time sample.
    ReadClock,
    /// Reads the TSC MSR: needs a logged value.
    ReadTsc,
    Halt,
}

/// What a replaying guest does differently from the recorded one.
#[derive(Debug, Clone, Default)]
struct Quirks {
    /// Takes another path at this exit: its signature differs.
    other_path_at: Option<u64>,
    /// Halts at this exit, waiting for an interrupt.
    halt_at: Option<u64>,
    /// Changes its memory at this exit.
    memory_change_at: Option<u64>,
    /// Exits with this status at the end.
    exit_status: u8,
}

/// A program run on the real core, as ftvm's vCPU loop runs a guest: it
/// asks the exit handler to complete each access and finish each exit,
/// takes a state digest every interval, and takes interrupts the core
/// says are pending (ending each with an EOI at its next exit).
struct Guest {
    quirks: Quirks,
    handler: ExitHandler,
    /// Stands in for guest memory in state digests.
    memory: u64,
    eoi_due: bool,
    _ram: GuestRam,
}

impl Guest {
    fn new(quirks: Quirks) -> Self {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        Self {
            quirks,
            handler: ExitHandler::new(Platform::new(Devices::default(), &ram)),
            memory: 0,
            eoi_due: false,
            _ram: ram,
        }
    }

    /// The same guest in another VM, as a restored state would be: its
    /// core through its state, its memory copied.
    fn copy(&self) -> Self {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let handler = ExitHandler::from_state(Devices::default(), &ram, &self.handler.state())
            .expect("a core's own state restores");
        Self {
            quirks: self.quirks.clone(),
            handler,
            memory: self.memory,
            eoi_due: self.eoi_due,
            _ram: ram,
        }
    }

    fn op_at(&self, exit: u64) -> Op {
        if exit == HALT_EXIT || self.quirks.halt_at == Some(exit) {
            Op::Halt
        } else if self.eoi_due {
            Op::Out(0x20, 0x20)
        } else if let Some((port, value)) = setup().nth(exit as usize - 1) {
            Op::Out(port, value)
        } else if exit % 10 == 3 {
            Op::ReadClock
        } else if exit % 17 == 5 {
            Op::ReadTsc
        } else if exit.is_multiple_of(9) {
            Op::Out(COM1, b'.')
        } else if self.quirks.other_path_at == Some(exit) {
            Op::Out(POST, exit as u8 ^ 1)
        } else {
            Op::Out(POST, exit as u8)
        }
    }

    fn state(&self) -> StateDigest {
        StateDigest {
            registers: self.handler.signature().value(),
            memory: self.handler.console().digest ^ self.memory,
        }
    }

    fn end(&self, reason: EndReason, status: u8) -> End {
        let state = match reason {
            EndReason::Stopped(_) | EndReason::Failed(_) => None,
            _ => Some(self.state()),
        };
        End {
            exit: self.handler.exits(),
            signature: self.handler.signature().value(),
            reason,
            status,
            console: self.handler.console(),
            state,
        }
    }

    /// Runs `exits` exits after boot; state digests every `interval` exits.
    fn run(
        &mut self,
        source: &mut dyn EventSource,
        exits: u64,
        interval: u64,
    ) -> Result<VmEnd, CoreError> {
        if let Some(end) = self.boot(source)? {
            return Ok(end);
        }
        if let Some(end) = self.run_exits(source, 1..=exits, interval)? {
            return Ok(end);
        }
        Ok(VmEnd::Guest(GuestEnd::Exit(self.quirks.exit_status)))
    }

    /// Exit 0; the end of the run if it ended there.
    fn boot(&mut self, source: &mut dyn EventSource) -> Result<Option<VmEnd>, CoreError> {
        match self.handler.boot(source)? {
            Flow::End(end) => Ok(Some(end)),
            Flow::Continue => Ok(None),
        }
    }

    /// Runs the exits of `range`; the end if the run ended on the way.
    fn run_exits(
        &mut self,
        source: &mut dyn EventSource,
        range: std::ops::RangeInclusive<u64>,
        interval: u64,
    ) -> Result<Option<VmEnd>, CoreError> {
        for exit in range {
            let op = self.op_at(exit);
            self.eoi_due = false;
            let (mut byte, mut value, mut fault) = ([0u8], 0u64, 0u8);
            let written;
            let access = match op {
                Op::Out(port, out) => {
                    written = [out];
                    Access::PioOut {
                        port,
                        data: &written,
                    }
                }
                Op::ReadClock => Access::PioIn {
                    port: 0x40,
                    data: &mut byte,
                },
                Op::ReadTsc => Access::RdMsr {
                    index: ft_logging::MSR_TSC,
                    value: &mut value,
                    fault: &mut fault,
                },
                Op::Halt => Access::Hlt,
            };
            let completed = match self.handler.access(access, source)? {
                Step::Completed(completed) => completed,
                Step::End(end) => return Ok(Some(end)),
            };
            if self.quirks.memory_change_at == Some(exit) {
                self.memory ^= 1;
            }
            if let Flow::End(end) =
                self.handler
                    .finish(completed, exit * 4, IF, source, &mut NullSink)?
            {
                return Ok(Some(end));
            }
            if interval != 0 && exit.is_multiple_of(interval) {
                source.state(exit, self.state())?;
            }
            if self.handler.interrupt_pending() {
                self.handler.acknowledge_interrupt();
                self.eoi_due = true;
            }
        }
        Ok(None)
    }

    /// The end record of a run that ended with `ended`.
    fn end_of(&self, ended: VmEnd) -> End {
        match ended {
            VmEnd::Guest(GuestEnd::Exit(status)) => self.end(EndReason::GuestExit(status), status),
            VmEnd::Guest(GuestEnd::Idle) => self.end(EndReason::Idle, 0),
            VmEnd::Stopped(stop) => self.end(EndReason::Stopped(stop), stop.exit_status()),
            other => panic!("the program does not end with {other:?}"),
        }
    }
}

/// The host side of a recording: a clock, serial input at set exits.
#[derive(Debug, Default)]
struct Host {
    clock_ns: u64,
    /// Stopped (SIGTERM) when asked for the events of this exit.
    stop_at: Option<u64>,
    /// Nothing ever wakes a halted guest.
    idle: bool,
    /// Halted queries answered at the current exit.
    halted_calls: u32,
}

impl EventSource for Host {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        if self.stop_at == Some(query.exit) {
            return Err(SourceError::Stopped(StopReason::Terminated));
        }
        if query.exit == 0 {
            events.push(Event::WallClock {
                unix_ns: 1_700_000_000_000_000_000,
            });
        }
        if query.halted {
            self.halted_calls += 1;
            let deadline = query.timer_deadline_ns.unwrap();
            // Woken early by the clock first, then by the timer and input.
            match (self.idle, self.halted_calls) {
                (true, _) => {}
                (false, 1) => events.push(Event::Time { ns: deadline - 500 }),
                (false, _) => {
                    self.clock_ns = deadline;
                    events.push(Event::Time { ns: deadline });
                    events.push(Event::SerialIn(b"wake".to_vec()));
                }
            }
            return Ok(());
        }
        if query.exit > 0 {
            self.clock_ns += 10_007;
        }
        let timer_due = query.timer_deadline_ns.is_some_and(|d| self.clock_ns >= d);
        if query.needs_time || timer_due {
            events.push(Event::Time { ns: self.clock_ns });
        }
        if let Some(index) = query.msr_read {
            events.push(Event::MsrRead {
                index,
                value: self.clock_ns,
            });
        }
        let input: &[u8] = match query.exit {
            8 => b"hi",
            60 => b"there",
            _ => b"",
        };
        if !input.is_empty() {
            let room = input.len().min(query.serial_room);
            events.push(Event::SerialIn(input[..room].to_vec()));
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

fn header() -> Header {
    let kernel = b"fake kernel".to_vec();
    Header {
        platform: "ftvm-pc/test".into(),
        mem_mib: 16,
        cmdline: String::new(),
        kernel_name: "fake".into(),
        kernel_sha256: Sha256::digest(&kernel).into(),
        kernel,
        cpuid: Vec::new(),
        digest_interval: DIGEST_INTERVAL,
        disk: None,
        net: None,
    }
}

/// Records a run of the program on `host`: what ended it, as written.
fn record(path: &Path, host: Host) -> End {
    let writer = TraceWriter::create(path, &header()).unwrap();
    let mut recorder = Recorder::new(host, writer, DIGEST_INTERVAL);
    let mut guest = Guest::new(Quirks::default());
    let ended = guest
        .run(&mut recorder, EXITS, DIGEST_INTERVAL)
        .unwrap_or_else(|error| panic!("recording failed: {error}"));
    let end = guest.end_of(ended);
    recorder.end(&end).unwrap();
    end
}

struct Replay {
    result: Result<VmEnd, CoreError>,
    guest: Guest,
    source: ReplaySource<replay::TraceReader<std::io::BufReader<std::fs::File>>>,
}

impl Replay {
    /// The end of a replay whose program ran to its end.
    fn end(&self) -> End {
        let ended = *self.result.as_ref().expect("the replay ran");
        self.guest.end_of(ended)
    }
}

fn replay(path: &Path, quirks: Quirks, exits: u64, verify: bool) -> Replay {
    let mut source = ReplaySource::new(TraceReader::open(path).unwrap(), verify);
    let interval = if verify { DIGEST_INTERVAL } else { 0 };
    let mut guest = Guest::new(quirks);
    let result = guest.run(&mut source, exits, interval);
    Replay {
        result,
        guest,
        source,
    }
}

/// The divergence of a core's run, if that is how it failed.
fn diverged(result: Result<VmEnd, CoreError>) -> Option<(u64, String)> {
    match result {
        Err(CoreError::Source(SourceError::Divergence { exit, detail })) => Some((exit, detail)),
        _ => None,
    }
}

/// A replay with `quirks` that diverges: at which exit, and how.
fn divergence(path: &Path, quirks: Quirks) -> (u64, String) {
    let mut replayed = replay(path, quirks, EXITS, true);
    match replayed.result {
        Ok(_) => {
            let end = replayed.end();
            match replayed.source.end(&end) {
                Err(SourceError::Divergence { exit, detail }) => (exit, detail),
                other => panic!("expected a divergence, got {other:?}"),
            }
        }
        Err(error) => diverged(Err(error)).expect("a divergence"),
    }
}

/// Copies a trace, changing or dropping records.
fn rewrite(from: &Path, to: &Path, change: impl Fn(Record) -> Option<Record>) {
    let mut reader = TraceReader::open(from).unwrap();
    let mut writer = TraceWriter::create(to, reader.header()).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        if let Some(record) = change(record) {
            writer.write(&record).unwrap();
        }
    }
    writer.finish().unwrap();
}

fn records(path: &Path) -> Vec<Record> {
    let mut reader = TraceReader::open(path).unwrap();
    std::iter::from_fn(|| reader.next_record().unwrap()).collect()
}

fn recorded_trace() -> (tempfile::TempDir, std::path::PathBuf, End) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trace");
    let end = record(&path, Host::default());
    (dir, path, end)
}

#[test]
fn a_recorded_run_replays_exactly_and_verifies() {
    let (_dir, path, recorded) = recorded_trace();
    assert_eq!(recorded.exit, EXITS);

    // The halted exit's events came in two batches and are all in the trace.
    let at_halt: Vec<Event> = records(&path)
        .into_iter()
        .filter_map(|record| match record {
            Record::Event { exit, event, .. } if exit == HALT_EXIT => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(at_halt.len(), 3, "{at_halt:?}");
    assert!(matches!(at_halt[2], Event::SerialIn(_)));

    let mut replayed = replay(&path, Quirks::default(), EXITS, true);
    let end = replayed.end();
    assert_eq!(end, recorded);
    replayed.source.end(&end).unwrap();
    assert_eq!(replayed.source.recorded_end(), Some(&recorded));
}

#[test]
fn a_replay_resumed_after_an_exit_goes_on_from_the_next_one() {
    let (_dir, path, recorded) = recorded_trace();
    let open = || TraceReader::open(&path).unwrap();
    for start in [DIGEST_INTERVAL, HALT_EXIT, 61] {
        // A guest at exit `start`, as a restored state would be.
        let mut guest = Guest::new(Quirks::default());
        let mut first = ReplaySource::new(open(), true);
        assert_eq!(guest.boot(&mut first).unwrap(), None);
        assert_eq!(
            guest
                .run_exits(&mut first, 1..=start, DIGEST_INTERVAL)
                .unwrap(),
            None
        );
        let mut resumed = ReplaySource::resume_after(open(), true, start);
        let mut rest = guest.copy();
        assert_eq!(
            rest.run_exits(&mut resumed, start + 1..=EXITS, DIGEST_INTERVAL)
                .unwrap(),
            None
        );
        let end = rest.end(EndReason::GuestExit(0), 0);
        assert_eq!(end, recorded, "resumed after exit {start}");
        resumed.end(&end).unwrap();
        // Resumed after an earlier exit, the log hands over inputs or
        // digests the guest is past.
        if !records(&path).iter().any(|record| record.exit() == start) {
            continue;
        }
        let mut early = ReplaySource::resume_after(open(), true, start - 1);
        let error = guest
            .copy()
            .run_exits(&mut early, start + 1..=EXITS, DIGEST_INTERVAL)
            .unwrap_err();
        assert!(
            matches!(error, CoreError::Source(SourceError::Divergence { .. })),
            "resumed after exit {}: {error}",
            start - 1
        );
    }
}

#[test]
fn a_replay_without_verify_passes_over_the_digests() {
    let (_dir, path, recorded) = recorded_trace();
    let mut replayed = replay(&path, Quirks::default(), EXITS, false);
    let end = replayed.end();
    replayed.source.end(&end).unwrap();
    assert_eq!(end, recorded);
}

#[test]
fn a_verifying_replay_must_check_every_digest() {
    let (_dir, path, _) = recorded_trace();
    let mut source = ReplaySource::new(TraceReader::open(&path).unwrap(), true);
    let result = Guest::new(Quirks::default()).run(&mut source, EXITS, 0);
    let (exit, detail) = diverged(result).expect("a divergence");
    // Found at the next exit, whether it has inputs or not.
    assert_eq!(exit, 26);
    assert_eq!(
        detail,
        "the log has a console digest at exit 25 that the replay did not check"
    );
}

#[test]
fn another_path_is_found_at_the_next_exit_with_inputs() {
    let (_dir, path, _) = recorded_trace();
    // Exits 13 and 22 have inputs; 15 has none.
    let (exit, detail) = divergence(
        &path,
        Quirks {
            other_path_at: Some(15),
            ..Quirks::default()
        },
    );
    assert_eq!(exit, 22);
    assert!(detail.starts_with("exit signature 0x"), "{detail}");
    assert!(detail.contains("differs from the log's 0x"), "{detail}");
    assert!(
        detail.ends_with("the last matching exit was 13"),
        "{detail}"
    );
}

#[test]
fn a_missing_time_sample_is_a_divergence() {
    let (dir, path, _) = recorded_trace();
    let altered = dir.path().join("no-time.trace");
    rewrite(&path, &altered, |record| match record {
        Record::Event {
            exit: 13,
            event: Event::Time { .. },
            ..
        } => None,
        other => Some(other),
    });
    let (exit, detail) = divergence(&altered, Quirks::default());
    assert_eq!(exit, 13);
    assert_eq!(
        detail,
        "the access reads a clock and the log has no time sample at this exit \
         (its next record is an MSR value at exit 22)"
    );
}

#[test]
fn a_missing_msr_value_is_a_divergence() {
    let (dir, path, _) = recorded_trace();
    let altered = dir.path().join("no-msr.trace");
    rewrite(&path, &altered, |record| match record {
        Record::Event {
            event: Event::MsrRead { .. },
            exit: 22,
            ..
        } => None,
        other => Some(other),
    });
    let (exit, detail) = divergence(&altered, Quirks::default());
    assert_eq!(exit, 22);
    assert!(detail.starts_with("the guest read MSR 0x10 and the log has no value for it"));
}

#[test]
fn serial_input_beyond_the_fifo_is_a_divergence() {
    let (dir, path, _) = recorded_trace();
    let altered = dir.path().join("flood.trace");
    rewrite(&path, &altered, |record| match record {
        Record::Event {
            exit: 8,
            signature,
            event: Event::SerialIn(_),
        } => Some(Record::Event {
            exit: 8,
            signature,
            event: Event::SerialIn(vec![b'x'; FIFO + 1]),
        }),
        other => Some(other),
    });
    let (exit, detail) = divergence(&altered, Quirks::default());
    assert_eq!(exit, 8);
    assert_eq!(
        detail,
        "the log has 17 serial bytes here but the UART's receive FIFO has room for 16"
    );
}

#[test]
fn inputs_the_replay_never_reached_are_a_divergence() {
    let (_dir, path, _) = recorded_trace();
    let mut replayed = replay(&path, Quirks::default(), 70, true);
    let end = replayed.end();
    let Err(SourceError::Divergence { exit, detail }) = replayed.source.end(&end) else {
        panic!("the replay ended early unnoticed");
    };
    assert_eq!(exit, 70);
    assert_eq!(
        detail,
        "the replay ended after exit 70, but the log has a time sample at exit 73"
    );
}

#[test]
fn a_guest_halted_where_the_trace_has_no_event_diverges() {
    let (_dir, path, _) = recorded_trace();
    let (exit, detail) = divergence(
        &path,
        Quirks {
            halt_at: Some(47),
            ..Quirks::default()
        },
    );
    assert_eq!(exit, 47);
    assert_eq!(
        detail,
        "the guest halted waiting for an event, while the log's next record is \
         a console digest at exit 50"
    );
}

#[test]
fn an_end_that_differs_is_a_divergence_naming_each_field() {
    let (_dir, path, _) = recorded_trace();
    let (exit, detail) = divergence(
        &path,
        Quirks {
            exit_status: 3,
            ..Quirks::default()
        },
    );
    assert_eq!(exit, EXITS);
    assert_eq!(
        detail,
        "end: replayed \"the guest exited with 3\" vs recorded \"the guest exited with 0\"; \
         exit status: replayed 3 vs recorded 0"
    );
}

#[test]
fn a_memory_difference_is_named_at_the_next_digest() {
    let (_dir, path, _) = recorded_trace();
    let (exit, detail) = divergence(
        &path,
        Quirks {
            memory_change_at: Some(30),
            ..Quirks::default()
        },
    );
    assert_eq!(exit, 50);
    assert!(detail.starts_with("memory: replayed digest 0x"), "{detail}");
}

#[test]
fn a_console_digest_that_differs_is_named_at_its_exit() {
    // The core folds every console byte into the exit signature too, so a
    // guest writing other output diverges at once; a console digest that
    // differs is checked where it was recorded.
    let (dir, path, _) = recorded_trace();
    let altered = dir.path().join("console.trace");
    rewrite(&path, &altered, |record| match record {
        Record::Output {
            exit: 50,
            stream,
            mut digest,
        } => {
            digest.digest ^= 1;
            Some(Record::Output {
                exit: 50,
                stream,
                digest,
            })
        }
        other => Some(other),
    });
    let (exit, detail) = divergence(&altered, Quirks::default());
    assert_eq!(exit, 50);
    assert_eq!(
        detail,
        "console output: the replayed 4 bytes differ from the recorded ones"
    );
}

#[test]
fn a_stopped_recording_ends_the_replay_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stopped.trace");
    let recorded = record(
        &path,
        Host {
            stop_at: Some(57),
            ..Host::default()
        },
    );
    assert_eq!(recorded.exit, 56);
    assert_eq!(recorded.reason, EndReason::Stopped(StopReason::Terminated));

    let mut replayed = replay(&path, Quirks::default(), EXITS, true);
    assert!(matches!(replayed.result, Ok(VmEnd::LogEnded)));
    assert_eq!(replayed.source.recorded_end(), Some(&recorded));
    // The caller ends the replay as the recording ended.
    let end = End {
        state: None,
        ..recorded.clone()
    };
    replayed.source.end(&end).unwrap();
}

#[test]
fn an_idle_recording_ends_the_replay_at_its_halt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idle.trace");
    let recorded = record(
        &path,
        Host {
            idle: true,
            ..Host::default()
        },
    );
    assert_eq!(
        (recorded.exit, &recorded.reason),
        (HALT_EXIT, &EndReason::Idle)
    );
    let replayed = replay(&path, Quirks::default(), EXITS, true);
    assert!(matches!(replayed.result, Ok(VmEnd::LogEnded)));
    assert_eq!(replayed.source.recorded_end(), Some(&recorded));
}

#[test]
fn a_damaged_trace_is_a_log_error_where_the_replay_reaches_it() {
    let (dir, path, _) = recorded_trace();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let replayed = replay(&cut, Quirks::default(), EXITS, true);
    let Err(CoreError::Source(SourceError::Log(message))) = replayed.result else {
        panic!("{:?}", replayed.result);
    };
    assert!(message.starts_with("truncated at byte "), "{message}");
}

#[test]
fn the_recorder_refuses_digests_off_the_interval_and_records_after_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refused.trace");
    let writer = TraceWriter::create(&path, &header()).unwrap();
    let mut recorder = Recorder::new(Host::default(), writer, DIGEST_INTERVAL);
    let Err(SourceError::Log(message)) = recorder.state(7, StateDigest::default()) else {
        panic!("a digest off the interval was recorded");
    };
    assert_eq!(
        message,
        "a state digest at exit 7 is off the trace's digest interval of 25 exits"
    );
    let end = Guest::new(Quirks::default()).end(EndReason::Reset, 0);
    recorder.end(&end).unwrap();
    assert!(matches!(recorder.end(&end), Err(SourceError::Log(_))));
    assert_eq!(records(&path), vec![Record::End(end)]);
}
