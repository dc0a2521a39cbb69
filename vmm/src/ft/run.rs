//! Running a side that is live, or may become live: its run pauses for
//! every cutover its protector asks for, and goes on at once.

use std::io::Stdout;
use std::sync::Arc;

use ft_logging::{EventSource, OutputSink};

use super::{BackupSource, PrimarySource};
use crate::host::{PauseSignal, StopSignal};
use crate::machine::Machine;
use crate::vstate::{PausePoint, Ran, RunError, VmEnd};

/// An event source that is a live side (a primary) or can become one (a
/// backup, after a takeover).
pub trait Protectable: EventSource {
    /// The live side, if this source is one now.
    fn live_side(&mut self) -> Option<&mut PrimarySource<Stdout>>;
}

impl Protectable for PrimarySource<Stdout> {
    fn live_side(&mut self) -> Option<&mut PrimarySource<Stdout>> {
        Some(self)
    }
}

impl Protectable for BackupSource<'_> {
    fn live_side(&mut self) -> Option<&mut PrimarySource<Stdout>> {
        self.live_mut()
    }
}

/// Runs `machine` until the guest ends or the host stops it, making a
/// cutover each time the run pauses on `pause`. State digests come every
/// `replay_interval` exits while the source replays (the interval of the
/// primary, whose digests the log carries), every `live_interval` once it
/// is live (from its first cutover on: alone, nobody needs them).
pub fn run(
    machine: &mut Machine,
    source: &mut dyn Protectable,
    sink: &mut dyn OutputSink,
    stop: &Arc<StopSignal>,
    pause: &PauseSignal,
    replay_interval: u64,
    live_interval: u64,
) -> Result<VmEnd, RunError> {
    loop {
        let interval = if source.live_side().is_some() {
            live_interval
        } else {
            replay_interval
        };
        match machine.run_to(source, sink, stop, interval, PausePoint::WhenAsked(pause))? {
            Ran::Ended(end) => return Ok(end),
            Ran::Paused => match source.live_side() {
                Some(live) => live.cutover(machine),
                // Nobody asks a replay for a cutover.
                None => pause.clear(),
            },
        }
    }
}
