//! The host side of a run: signals, the vCPU kick, and for a live run
//! stdin and the clock.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use vmm::host::{self, HostInput, LiveSource, StopSignal, TerminalGuard, VcpuKicker, VirtualClock};

use super::error::CliError;

/// What a run needs from the host, kept until it ends.
#[derive(Debug)]
pub struct Host {
    pub stop: Arc<StopSignal>,
    kicker: VcpuKicker,
    input: Receiver<HostInput>,
    terminal: Option<TerminalGuard>,
}

impl Host {
    /// Watches SIGINT and SIGTERM and, when `stdin` is set, forwards stdin
    /// to the guest (raw mode on a terminal). Must run on the vCPU thread.
    pub fn start(stdin: bool) -> Result<Self, CliError> {
        let stop = Arc::new(StopSignal::default());
        let kicker = VcpuKicker::for_current_thread().map_err(|e| CliError::Host(e.into()))?;
        let (input_tx, input) = crossbeam_channel::unbounded();
        host::watch_signals(stop.clone(), input_tx.clone(), kicker.clone())
            .map_err(CliError::Host)?;
        let terminal = if stdin {
            host::spawn_stdin_reader(input_tx, stop.clone(), kicker.clone())
                .map_err(CliError::Host)?
        } else {
            None
        };
        Ok(Self {
            stop,
            kicker,
            input,
            terminal,
        })
    }

    /// Events from this host: its clock and stdin.
    pub fn live_source(&self) -> LiveSource {
        LiveSource::new(self.input.clone(), self.stop.clone(), VirtualClock::start())
    }

    /// The vCPU no longer runs: stop kicking it and give the terminal back.
    pub fn finish(self) {
        self.kicker.done();
        drop(self.terminal);
    }
}
