//! A replay of a trace that can be moved: run to an exit, step one
//! instruction, run to a breakpoint, start again from the beginning.
//!
//! A point in the run is a [`Position`]: exit k, then n debug stops (single
//! steps) since. Only counted exits advance k, and they happen exactly as in
//! a plain replay: the same events applied at the same exits, the same
//! interrupts injected there, every signature and (with `verify`) digest
//! checked. Debug exits count nothing and change no device.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ft_logging::{CpuidLeaf, End, EventSource, SourceError, StopReason};
use ftvm_core::exit_handler::CoreError;
use ftvm_core::platform::{Devices, PLATFORM_VERSION};
use iced_x86::Mnemonic;
use kvm_bindings::kvm_sync_regs;
use replay::{ReplaySource, TraceError, TraceReader};
use vm_memory::GuestMemoryMmap;

use super::console_window::ConsoleWindow;
use super::guest_view::GuestView;
use super::progress::Progress;
use super::watch::{IntervalStart, ShadowRam, Watch};
use crate::exit_status;
use crate::host::StopSignal;
use crate::kernel::Kernel;
use crate::machine::{Cpu, Machine, MachineError, end_reason};
use crate::vm_config::{ConfigError, VmConfig};
use crate::vstate::{
    BREAKPOINT_SLOTS, DebugError, GuestDebug, Registers, Resumed, RunError, Vm, VmEnd, VmError,
};

/// A point in a replay: after exit `exit`, `steps` single steps later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub exit: u64,
    pub steps: u64,
}

impl Position {
    pub fn at_exit(exit: u64) -> Self {
        Self { exit, steps: 0 }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Check every console and state digest and the end record.
    pub verify: bool,
    /// Show a progress bar on a terminal when the replay takes long.
    pub progress: bool,
    /// The replay will be stepped and stopped at breakpoints: where it
    /// stops, the last exit's instruction is completed (one more KVM_RUN
    /// that does not enter the guest), so every position is between two
    /// instructions.
    pub stepping: bool,
}

/// How a replay ended.
#[derive(Debug, Clone)]
pub enum Ending {
    /// It came to the recorded end: the guest's status, or the recorded
    /// one where the recorded run was stopped or failed.
    Finished { status: u8, end: End, recorded: End },
    /// This host stopped it (a signal).
    Stopped(StopReason),
}

impl Ending {
    pub fn status(&self) -> u8 {
        match self {
            Ending::Finished { status, .. } => *status,
            Ending::Stopped(reason) => reason.exit_status(),
        }
    }
}

/// Why a forward move stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It got where it was going.
    Arrived,
    /// A hardware breakpoint stopped it, at this address.
    Breakpoint(u64),
    /// A write changed the watch at this address.
    Watch(u64),
    /// The caller's `interrupted` said so, at an exit.
    Interrupted,
    /// The replay is over; see [`Replayer::ending`].
    Ended,
}

/// What one KVM_RUN came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Exit,
    Debug {
        pc: u64,
    },
    /// A platform exit left unhandled: the interval wrote a watched page.
    Held,
    Ended,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("the trace's VM configuration is invalid: {0}")]
    Config(#[source] ConfigError),
    #[error("the trace was recorded on platform `{recorded}`; this ftvm provides `{ours}`")]
    Platform {
        recorded: String,
        ours: &'static str,
    },
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Debug(#[from] DebugError),
    #[error(transparent)]
    Vm(#[from] VmError),
}

type TraceSource = ReplaySource<TraceReader<BufReader<File>>>;

/// One execution of the trace from its start.
#[derive(Debug)]
struct Run {
    machine: Machine,
    source: Progress<TraceSource>,
    /// Debug stops since the last counted exit; unknown after a breakpoint
    /// stopped a free run.
    steps: Option<u64>,
    ending: Option<Ending>,
    /// Where a watched interval started.
    interval: Option<IntervalStart>,
    /// What KVM was last told to stop for.
    debug: GuestDebug,
    /// No access of the last exit waits for KVM_RUN to complete it.
    settled: bool,
}

/// A replay that can be moved about.
#[derive(Debug)]
pub struct Replayer {
    trace: PathBuf,
    config: VmConfig,
    cpuid: Vec<CpuidLeaf>,
    options: ReplayOptions,
    /// Exits between state digests: the trace's with `verify`, else none.
    digest_interval: u64,
    /// The exit the trace ends at.
    total_exits: u64,
    console: ConsoleWindow,
    stop: Arc<StopSignal>,
    run: Run,
}

impl Run {
    /// A fresh VM for the trace, booted: at exit 0.
    fn start(
        trace: &Path,
        config: &VmConfig,
        cpuid: &[CpuidLeaf],
        options: ReplayOptions,
        total_exits: u64,
    ) -> Result<Self, ReplayError> {
        let reader = TraceReader::open(trace)?;
        let mut machine = Machine::new(config, Cpu::Recorded(cpuid))?;
        if options.stepping {
            let vcpu = machine.vcpu_mut();
            vcpu.sync_debug_state();
            // Fills the run structure's copy of the state.
            vcpu.complete_exit()?;
        }
        let shown = if options.progress { total_exits } else { 0 };
        let mut source = Progress::new(ReplaySource::new(reader, options.verify), shown);
        let steps = Some(0);
        match machine.boot(&mut source) {
            Ok(()) => Ok(Self {
                machine,
                source,
                steps,
                ending: None,
                interval: None,
                debug: GuestDebug::default(),
                settled: true,
            }),
            Err(error) => Err(error.into()),
        }
    }
}

impl Replayer {
    /// Reads the whole trace first (a damaged one is refused before any of
    /// it runs), then boots its VM: the replay stands before the guest's
    /// first instruction, at exit 0.
    pub fn open(
        trace: &Path,
        options: ReplayOptions,
        console: ConsoleWindow,
        stop: Arc<StopSignal>,
    ) -> Result<Self, ReplayError> {
        let total_exits = replay::inspect(trace)?.end.exit;
        let header = TraceReader::open(trace)?.header().clone();
        if header.platform != PLATFORM_VERSION {
            return Err(ReplayError::Platform {
                recorded: header.platform,
                ours: PLATFORM_VERSION,
            });
        }
        let kernel = Kernel {
            name: header.kernel_name.clone(),
            image: Cow::Owned(header.kernel.clone()),
        };
        let devices = Devices {
            disk: header.disk,
            net: header.net,
        };
        let config = VmConfig::with_kernel(kernel, header.mem_mib, &header.cmdline, devices)
            .map_err(ReplayError::Config)?;
        let run = Run::start(trace, &config, &header.cpuid, options, total_exits)?;
        Ok(Self {
            trace: trace.to_owned(),
            config,
            cpuid: header.cpuid,
            options,
            digest_interval: if options.verify {
                header.digest_interval
            } else {
                0
            },
            total_exits,
            console,
            stop,
            run,
        })
    }

    /// Back to exit 0, in a fresh VM. Console bytes already printed are not
    /// printed again.
    pub fn restart(&mut self) -> Result<(), ReplayError> {
        self.run = Run::start(
            &self.trace,
            &self.config,
            &self.cpuid,
            self.options,
            self.total_exits,
        )?;
        Ok(())
    }

    /// The signal that asks the replay to stop.
    pub fn stop_signal(&self) -> Arc<StopSignal> {
        self.stop.clone()
    }

    /// The exit the trace ends at.
    pub fn total_exits(&self) -> u64 {
        self.total_exits
    }

    /// Whether the VM has virtio devices, which write guest memory at exits.
    pub fn has_virtio_devices(&self) -> bool {
        let devices = self.config.devices;
        devices.disk.is_some() || devices.net.is_some()
    }

    /// Counted exits so far.
    pub fn exit(&self) -> u64 {
        self.run.machine.exits()
    }

    /// Where the replay is, when known: a breakpoint that stopped a free
    /// run leaves the steps since the last exit uncounted.
    pub fn position(&self) -> Option<Position> {
        self.run.steps.map(|steps| Position {
            exit: self.exit(),
            steps,
        })
    }

    /// How the replay ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.run.ending.as_ref()
    }

    /// The virtual time of the replay, in nanoseconds since boot.
    pub fn now_ns(&self) -> u64 {
        self.run.source.now_ns()
    }

    /// The registers, read from KVM.
    pub fn registers(&self) -> Result<Registers, ReplayError> {
        Ok(self.run.machine.vcpu().registers()?)
    }

    /// The registers, system registers and pending events, as the last
    /// KVM_RUN left them: a stepping replay makes sure that is now.
    pub fn synced(&self) -> kvm_sync_regs {
        self.run.machine.vcpu().synced()
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        self.run.machine.memory()
    }

    /// Runs freely until exit `exit` is done (and its interrupt injected),
    /// or the replay ends; `progress` hears every exit.
    pub fn run_to_exit(
        &mut self,
        exit: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Stop, ReplayError> {
        while self.exit() < exit {
            if self.resume(GuestDebug::default(), None)? == Event::Ended {
                return Ok(Stop::Ended);
            }
            progress(self.exit());
        }
        self.settle()?;
        Ok(Stop::Arrived)
    }

    /// Runs to the recorded end.
    pub fn run_to_end(&mut self) -> Result<&Ending, ReplayError> {
        while self.resume(GuestDebug::default(), None)? != Event::Ended {}
        Ok(self
            .ending()
            .expect("a replay that stopped for its end has an ending"))
    }

    /// Runs until a breakpoint at one of `breakpoints`, a write that
    /// changes one of `watches`, the end of exit `until` (when given),
    /// `interrupted` says so at an exit, or the end. Resuming at a
    /// breakpoint first steps once with it disarmed: on our hosts the
    /// resumed instruction would hit it again (DESIGN.md §1).
    ///
    /// A breakpoint found by a free run leaves the position unknown; with
    /// watches, every stop is at its exact position (see [`super::watch`]).
    pub fn continue_to(
        &mut self,
        breakpoints: &[Option<u64>; BREAKPOINT_SLOTS],
        watches: &[Watch],
        until: Option<u64>,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Stop, ReplayError> {
        let stop = self.run_free(breakpoints, watches, until, interrupted)?;
        self.settle()?;
        Ok(stop)
    }

    fn run_free(
        &mut self,
        breakpoints: &[Option<u64>; BREAKPOINT_SLOTS],
        watches: &[Watch],
        until: Option<u64>,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Stop, ReplayError> {
        let watching = !watches.is_empty();
        if self.at_breakpoint(breakpoints) {
            let before = self.watched_values(watches);
            if self.step()? == Stop::Ended {
                return Ok(Stop::Ended);
            }
            if let Some(watch) = self.changed_watch(watches, &before) {
                return Ok(Stop::Watch(watch));
            }
        }
        let watched: Vec<u64> = watches.iter().flat_map(Watch::pages).collect();
        if watching {
            self.begin_interval()?;
        }
        let debug = GuestDebug {
            single_step: false,
            breakpoints: *breakpoints,
        };
        loop {
            if until.is_some_and(|until| self.exit() >= until) {
                return Ok(Stop::Arrived);
            }
            let hold = watching.then_some(watched.as_slice());
            match self.resume(debug, hold)? {
                Event::Exit => {
                    if watching {
                        self.begin_interval()?;
                    }
                    if interrupted() {
                        return Ok(Stop::Interrupted);
                    }
                }
                // The interval wrote a watched page, or hit a breakpoint
                // somewhere: step it from its start.
                Event::Held | Event::Debug { .. } if watching => {
                    if let Some(stop) = self.step_interval(breakpoints, watches)? {
                        return Ok(stop);
                    }
                    if interrupted() {
                        return Ok(Stop::Interrupted);
                    }
                }
                Event::Debug { pc } => {
                    self.run.steps = None;
                    return Ok(Stop::Breakpoint(pc));
                }
                Event::Held => unreachable!("nothing holds an exit of an unwatched run"),
                Event::Ended => return Ok(Stop::Ended),
            }
        }
    }

    /// Whether a free run with `breakpoints` armed stops here: the next
    /// instruction is at one, and no interrupt comes first.
    pub fn at_breakpoint(&self, breakpoints: &[Option<u64>; BREAKPOINT_SLOTS]) -> bool {
        let state = self.synced();
        breakpoints.contains(&Some(state.regs.rip)) && state.events.interrupt.injected == 0
    }

    /// The bytes each of `watches` holds now.
    pub fn watched_values(&self, watches: &[Watch]) -> Vec<Vec<u8>> {
        watches
            .iter()
            .map(|watch| watch.value(self.memory()))
            .collect()
    }

    /// The address of the first of `watches` whose bytes differ from
    /// `before`.
    fn changed_watch(&self, watches: &[Watch], before: &[Vec<u8>]) -> Option<u64> {
        watches
            .iter()
            .zip(before)
            .find(|(watch, value)| watch.value(self.memory()) != **value)
            .map(|(watch, _)| watch.address)
    }

    /// A watched interval starts here: save the vCPU, bring the copy of RAM
    /// up to date (the first time, with KVM's dirty log turned on).
    fn begin_interval(&mut self) -> Result<(), ReplayError> {
        self.settle()?;
        let run = &mut self.run;
        let vm = run.machine.vm();
        let vcpu = run.machine.vcpu().snapshot()?;
        match &mut run.interval {
            Some(interval) => {
                let written = vm.take_dirty_pages()?;
                interval.ram.advance(run.machine.memory(), &written);
                interval.vcpu = vcpu;
                interval.steps = run.steps;
            }
            None => {
                vm.log_dirty_pages()?;
                vm.take_dirty_pages()?;
                run.interval = Some(IntervalStart {
                    ram: ShadowRam::new(run.machine.memory()),
                    vcpu,
                    steps: run.steps,
                    failure: None,
                });
            }
        }
        Ok(())
    }

    /// Takes the interval back to its start and steps it, to the first
    /// write that changes a watch or breakpoint it reaches; `None` when it
    /// comes to its exit without either.
    fn step_interval(
        &mut self,
        breakpoints: &[Option<u64>; BREAKPOINT_SLOTS],
        watches: &[Watch],
    ) -> Result<Option<Stop>, ReplayError> {
        let run = &mut self.run;
        let interval = run
            .interval
            .as_mut()
            .expect("a watched run has begun its interval");
        if let Some(error) = interval.failure.take() {
            return Err(error.into());
        }
        // Finish what KVM has pending, then put the state back; the last
        // KVM_RUN refreshes the run structure's copy of it.
        run.machine.vcpu_mut().complete_exit()?;
        let written = run.machine.vm().take_dirty_pages()?;
        interval.ram.restore(run.machine.memory(), &written);
        run.machine.vcpu().restore(&interval.vcpu)?;
        run.machine.vcpu_mut().complete_exit()?;
        run.settled = true;
        run.steps = interval.steps;
        let before = self.watched_values(watches);
        loop {
            if self.at_breakpoint(breakpoints) {
                return Ok(Some(Stop::Breakpoint(self.synced().regs.rip)));
            }
            let exit = self.exit();
            if self.step()? == Stop::Ended {
                return Ok(Some(Stop::Ended));
            }
            if let Some(watch) = self.changed_watch(watches, &before) {
                return Ok(Some(Stop::Watch(watch)));
            }
            if self.exit() != exit {
                self.begin_interval()?;
                return Ok(None);
            }
        }
    }

    /// One step forward: one debug stop.
    ///
    /// A port or MMIO access gives its platform exit, which is counted and
    /// handled as in any replay, and that ends the step. HLT is run, not
    /// stepped (see [`crate::vstate`]'s debug notes). An interrupt injected
    /// at the last exit is delivered without the trap flag, stopping at its
    /// handler's first instruction with a breakpoint there, so the guest's
    /// memory stays as in a plain replay: a delivery is a step of its own.
    pub fn step(&mut self) -> Result<Stop, ReplayError> {
        let state = self.synced();
        let view = GuestView::new(self.memory(), &state.sregs);
        let queued = (state.events.interrupt.injected != 0).then_some(state.events.interrupt.nr);
        let debug = match queued {
            Some(vector) => match view.interrupt_handler(vector) {
                Some(handler) => GuestDebug {
                    single_step: false,
                    breakpoints: [Some(handler), None, None, None],
                },
                // A gate we cannot read: run to the next exit instead.
                None => GuestDebug::default(),
            },
            None => GuestDebug {
                single_step: view
                    .instruction_at(state.regs.rip)
                    .is_none_or(|instruction| instruction.mnemonic() != Mnemonic::Hlt),
                ..GuestDebug::default()
            },
        };
        match self.resume(debug, None)? {
            Event::Ended => return Ok(Stop::Ended),
            Event::Debug { .. } => self.run.steps = self.run.steps.map(|steps| steps + 1),
            Event::Exit => self.settle()?,
            Event::Held => unreachable!("a step holds no exit"),
        }
        Ok(Stop::Arrived)
    }

    /// Completes the last exit's access, if that is still to do: a free
    /// run leaves it to the next KVM_RUN, which costs nothing then.
    fn settle(&mut self) -> Result<(), ReplayError> {
        if !self.run.settled {
            self.run.machine.vcpu_mut().complete_exit()?;
            self.run.settled = true;
        }
        Ok(())
    }

    /// One KVM_RUN, to a debug exit or to a counted exit it handles; one
    /// after which the guest had written a page of `hold` is held, not
    /// handled.
    fn resume(&mut self, debug: GuestDebug, hold: Option<&[u64]>) -> Result<Event, ReplayError> {
        if self.run.ending.is_some() {
            return Ok(Event::Ended);
        }
        let run = &mut self.run;
        if run.debug != debug {
            run.machine.vcpu().set_guest_debug(debug)?;
            run.debug = debug;
        }
        let interval = &mut run.interval;
        let mut hold = |vm: &Vm| match (hold, interval.as_mut()) {
            (Some(watched), Some(interval)) => match vm.take_dirty_pages() {
                Ok(written) => interval.ram.note_written(&written, watched),
                Err(error) => {
                    interval.failure = Some(error);
                    true
                }
            },
            _ => false,
        };
        let result = run.machine.resume(
            &mut run.source,
            &mut self.console,
            &self.stop,
            self.digest_interval,
            &mut hold,
        );
        match result {
            Ok(Resumed::Exit) => {
                run.settled = !self.options.stepping;
                run.steps = Some(0);
                Ok(Event::Exit)
            }
            Ok(Resumed::Debug(debug_exit)) => Ok(Event::Debug { pc: debug_exit.pc }),
            Ok(Resumed::Held) => Ok(Event::Held),
            Ok(Resumed::End(end)) => self.conclude(Ok(end)),
            Err(error) => self.conclude(Err(error)),
        }
    }

    /// Ends the replay as the recorded run ended, checking the end.
    fn conclude(&mut self, result: Result<VmEnd, RunError>) -> Result<Event, ReplayError> {
        let run = &mut self.run;
        // The end is at the last exit (or between exits, for a stop).
        run.steps = Some(0);
        let recorded_end = |source: &Progress<TraceSource>| {
            source
                .source()
                .recorded_end()
                .cloned()
                .expect("a replay source has read the End record when it reports LogEnded")
        };
        let (reason, status) = match &result {
            Ok(VmEnd::Stopped(reason)) => {
                run.ending = Some(Ending::Stopped(*reason));
                return Ok(Event::Ended);
            }
            Ok(end) => (end_reason(&result), exit_status::of_end(*end)),
            // The recorded run was stopped, or failed, here: end as it did.
            Err(RunError::Core(CoreError::Source(SourceError::LogEnded))) => {
                let recorded = recorded_end(&run.source);
                (recorded.reason, recorded.status)
            }
            // A failure of the replay itself that the recording may share
            // (KVM refusing the same instruction); anything from the log is not.
            Err(error) if !exit_status::is_log_error(error) => {
                (end_reason(&result), exit_status::run_status(error))
            }
            Err(_) => return Err(result.expect_err("an error").into()),
        };
        let end = run.machine.end(reason, status);
        run.source.end(&end).map_err(|e| RunError::Core(e.into()))?;
        let recorded = recorded_end(&run.source);
        // Without verify the ends are not compared; a failure of this
        // replay that the recorded run did not have is still a failure.
        if let Err(error) = result
            && recorded.reason != end.reason
        {
            return Err(error.into());
        }
        run.ending = Some(Ending::Finished {
            status: recorded.status,
            end,
            recorded,
        });
        Ok(Event::Ended)
    }
}
