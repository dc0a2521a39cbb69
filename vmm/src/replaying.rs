//! Replaying a log on a machine, from its start or from a state taken after
//! exit N of the logged run: `ftvm replay`, a backup that joins a running
//! primary (it replays the primary's log from the exit the transferred
//! state was taken after) and seeking in a trace (restore a checkpoint,
//! replay forward) are all this.

use std::sync::Arc;

use ft_logging::{End, EndReason, EventSource, OutputSink, StopReason};
use replay::{RecordStream, ReplaySource};
use vm_state::VmState;

use crate::exit_status;
use crate::host::StopSignal;
use crate::machine::{Machine, RestoreError, end_reason};
use crate::vstate::{Ran, Resumed, RunError, RunIo, VmEnd};

/// A machine replaying a log.
#[derive(Debug)]
pub struct Replay<S> {
    machine: Machine,
    source: ReplaySource<S>,
    /// Exits between the state digests checked; 0 for none.
    digest_interval: u64,
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The host stopped the replay.
    Stopped(StopReason),
    /// The replay came to the logged run's end: the replay's own end record
    /// and the log's, which [`Replay::finish`] compared in verify mode.
    Ended {
        /// The replay's end record.
        end: End,
        /// The log's.
        recorded: End,
    },
}

impl<S: RecordStream> Replay<S> {
    /// `machine`, at the start of the logged run or at a state of it,
    /// replaying from `source`; every `digest_interval` exits (the log's
    /// own interval in verify mode, else 0) its state digest is checked.
    pub fn new(machine: Machine, source: ReplaySource<S>, digest_interval: u64) -> Self {
        Self {
            machine,
            source,
            digest_interval,
        }
    }

    /// The machine of `state`, taken after some exit N of the run `stream`
    /// logs, replaying that log from exit N + 1 on. The log's records of
    /// exits up to N are passed over; in verify mode the digests of later
    /// exits are checked, every `state.header.digest_interval` exits.
    pub fn from_state(state: &VmState, stream: S, verify: bool) -> Result<Self, RestoreError> {
        let machine = Machine::restore(state)?;
        let source = ReplaySource::resume_after(stream, verify, machine.exits());
        let interval = if verify {
            state.header.digest_interval
        } else {
            0
        };
        Ok(Self::new(machine, source, interval))
    }

    /// The machine replaying.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The machine replaying, to drive one exit at a time.
    pub fn machine_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }

    /// One KVM_RUN of the replay (see [`Machine::resume`]).
    pub fn resume(
        &mut self,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        pause: bool,
        hold: &mut dyn FnMut() -> bool,
    ) -> Result<Resumed, RunError> {
        let io = RunIo {
            source: &mut self.source,
            sink,
            stop,
            digest_interval: self.digest_interval,
        };
        self.machine.resume(io, pause, hold)
    }

    /// Replays to the end of the log (or of the guest).
    pub fn run(
        &mut self,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
    ) -> Result<VmEnd, RunError> {
        self.machine
            .run(&mut self.source, sink, stop, self.digest_interval)
    }

    /// Replays until the first settled exit boundary at or after exit
    /// `exit`, where the state can be captured.
    pub fn run_until(
        &mut self,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        exit: u64,
    ) -> Result<Ran, RunError> {
        self.machine
            .run_until(&mut self.source, sink, stop, self.digest_interval, exit)
    }

    /// How the replay whose [`run`](Self::run) gave `result` ended, checked
    /// against the log's end: where the logged run was stopped or failed,
    /// the replay ends as it did; in verify mode every difference between
    /// the ends is a divergence.
    pub fn finish(&mut self, result: Result<VmEnd, RunError>) -> Result<ReplayEnd, RunError> {
        if let Ok(VmEnd::Stopped(reason)) = &result {
            return Ok(ReplayEnd::Stopped(*reason));
        }
        let Some((reason, status)) = replayed_end(&result, self.source.recorded_end()) else {
            return Err(result.expect_err("an error from the log"));
        };
        let end = self.machine.end(reason, status);
        self.source
            .end(&end)
            .map_err(|error| RunError::Core(error.into()))?;
        let recorded = self
            .source
            .recorded_end()
            .expect("a replay source has read the End record once end() succeeds")
            .clone();
        // Without verifying the ends are not compared; a failure of this
        // replay that the recorded run did not have is still a failure.
        if let Err(error) = result
            && recorded.reason != end.reason
        {
            return Err(error);
        }
        Ok(ReplayEnd::Ended { end, recorded })
    }
}

/// The end record's reason and status for a run that replayed a log and
/// ended with `result`, `recorded` being the log's end record once the
/// replay has read it. Where the logged run was stopped or failed (the log
/// ended), the replay ends as it did; a failure the logged run may share
/// (KVM refusing the same instruction) is checked against the log's end.
/// None when the host stopped the replay or the log itself failed it: the
/// caller ends on `result`.
pub fn replayed_end(
    result: &Result<VmEnd, RunError>,
    recorded: Option<&End>,
) -> Option<(EndReason, u8)> {
    match result {
        Ok(VmEnd::Stopped(_)) => None,
        Ok(VmEnd::LogEnded) => {
            let recorded =
                recorded.expect("a replay source has read the End record when it reports LogEnded");
            Some((recorded.reason.clone(), recorded.status))
        }
        Ok(end) => Some((end_reason(result), exit_status::of_end(*end))),
        Err(error) if !exit_status::is_log_error(error) => {
            Some((end_reason(result), exit_status::of_run_error(error)))
        }
        Err(_) => None,
    }
}
