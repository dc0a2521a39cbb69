//! The host side of a run: signals, the vCPU kick, and for a live run
//! stdin and the clock.

use std::cell::RefCell;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use vmm::host::{
    self, DiskIo, HostDevices, HostInput, LiveSource, OutputLease, PauseSignal, SerialWindow,
    StopSignal, Tap, TerminalGuard, VcpuKicker, VirtualClock,
};
use vmm::monitor::Stats;

use super::devices::Backends;
use super::error::CliError;

/// What a run needs from the host, kept until it ends.
#[derive(Debug)]
pub struct Host {
    pub stop: Arc<StopSignal>,
    kicker: VcpuKicker,
    input_tx: Sender<HostInput>,
    input: Receiver<HostInput>,
    /// Stdin's bytes on their way to the guest.
    window: SerialWindow,
    terminal: RefCell<Option<TerminalGuard>>,
    /// Where this host's devices count what they carry.
    stats: Arc<Stats>,
}

impl Host {
    /// Watches SIGINT and SIGTERM and, when `stdin` is set, forwards stdin
    /// to the guest (raw mode on a terminal); its devices count what they
    /// carry in `stats`. Must run on the vCPU thread.
    pub fn start(stdin: bool, stats: Arc<Stats>) -> Result<Self, CliError> {
        let stop = Arc::new(StopSignal::default());
        let kicker = VcpuKicker::for_current_thread().map_err(|e| CliError::Host(e.into()))?;
        let (input_tx, input) = crossbeam_channel::unbounded();
        host::watch_signals(stop.clone(), input_tx.clone(), kicker.clone())
            .map_err(CliError::Host)?;
        let host = Self {
            stop,
            kicker,
            input_tx,
            input,
            window: SerialWindow::default(),
            terminal: RefCell::new(None),
            stats,
        };
        if stdin {
            host.attach_stdin()?;
        }
        Ok(host)
    }

    /// Forwards stdin to the guest from now on.
    pub fn attach_stdin(&self) -> Result<(), CliError> {
        let guard = host::spawn_stdin_reader(
            self.input_tx.clone(),
            self.window.clone(),
            self.stop.clone(),
            self.kicker.clone(),
        )
        .map_err(CliError::Host)?;
        *self.terminal.borrow_mut() = guard;
        Ok(())
    }

    /// Events from this host: its clock and stdin.
    pub fn live_source(&self) -> LiveSource {
        self.live_source_from(0)
    }

    /// Events from this host, with virtual time going on from `ns`.
    pub fn live_source_from(&self, ns: u64) -> LiveSource {
        LiveSource::new(
            self.input.clone(),
            self.window.clone(),
            self.stop.clone(),
            VirtualClock::resume(ns),
        )
        .counting(self.stats.net.clone())
    }

    /// Hands the frames arriving on `tap` to the guest from now on.
    pub fn receive_from(&self, tap: &Tap) -> Result<(), CliError> {
        tap.spawn_reader(self.input_tx.clone())
            .map_err(CliError::Host)
    }

    /// The guest's devices on this host: the disk's I/O thread, completing
    /// into this host's inputs, and the TAP device, which hands its frames
    /// to the guest when `receiving` (a backup's does not until it is live).
    pub fn devices(&self, backends: Backends, receiving: bool) -> Result<HostDevices, CliError> {
        let lease = OutputLease::default();
        let disk = backends
            .image
            .map(|image| DiskIo::start(image, self.input_tx.clone(), lease.clone()))
            .transpose()
            .map_err(CliError::Host)?;
        if let (true, Some(tap)) = (receiving, &backends.tap) {
            self.receive_from(tap)?;
        }
        Ok(HostDevices {
            disk,
            tap: backends.tap,
            lease,
            stats: self.stats.clone(),
        })
    }

    /// A way for other threads to pause the guest at its next exit
    /// boundary (a live transfer's cutover).
    pub fn pause_signal(&self) -> PauseSignal {
        PauseSignal::new(self.kicker.clone())
    }

    /// Where this host's devices count what they carry.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The error of a wait that ended with `error`: the stop that made it
    /// give up, if one was requested.
    pub fn stopped_or(&self, waiting: &'static str, error: impl Into<CliError>) -> CliError {
        match self.stop.requested() {
            Some(reason) => CliError::Stopped { reason, waiting },
            None => error.into(),
        }
    }

    /// A way for other threads to wake the vCPU thread out of a wait.
    pub fn input_sender(&self) -> Sender<HostInput> {
        self.input_tx.clone()
    }

    /// The vCPU no longer runs: stop kicking it and give the terminal back.
    pub fn finish(&self) {
        self.kicker.done();
        drop(self.terminal.borrow_mut().take());
    }
}
