//! A replay of a trace that can be moved: run to an exit, step one
//! instruction, run to a breakpoint, and start again from a checkpoint.
//!
//! A point in the run is a [`Position`]: exit k, then n debug stops (single
//! steps) since. Only counted exits advance k, and they happen exactly as in
//! a plain replay: the same events applied at the same exits, the same
//! interrupts injected there, every signature and (with `verify`) digest
//! checked. Debug exits count nothing and change no device.
//!
//! Going back means starting again from a [`Checkpoint`] at or before the
//! target (or from boot) in a fresh VM, and running forward. A stepping
//! replay takes checkpoints of its own in memory as it runs forward, every
//! [`MEMORY_CHECKPOINT_NS`] of virtual time, each holding the pages that
//! changed since the one it follows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ft_logging::{Header, Record, StopReason};
use ftvm_core::memory::GuestRam;
use ftvm_core::platform::PLATFORM_VERSION;
use iced_x86::Mnemonic;
use kvm_bindings::kvm_sync_regs;
use replay::{ReplaySource, TraceError, TraceReader};
use vm_state::{DirtyPages, MachineState, PageSet, StateError};

use super::console_window::ConsoleWindow;
use super::guest_view::GuestView;
use super::progress::Progress;
use super::watch::{IntervalStart, ShadowRam, Watch};
use crate::host::StopSignal;
use crate::machine::{Cpu, Machine, MachineError, RestoreError};
use crate::replaying::{Replay, ReplayEnd};
use crate::vm_config::{ConfigError, VmConfig};
use crate::vstate::{
    BREAKPOINT_SLOTS, DebugError, GuestDebug, MemoryTracker, Registers, Resumed, RunError,
    VcpuStateError, VmEnd, VmError,
};

/// Virtual time between the checkpoints a stepping replay takes in memory.
pub const MEMORY_CHECKPOINT_NS: u64 = 250_000_000;

/// A point in a replay: after exit `exit`, `steps` single steps later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Exits completed.
    pub exit: u64,
    /// Debug stops since the last of them.
    pub steps: u64,
}

impl Position {
    /// Just after exit `exit`.
    pub fn at_exit(exit: u64) -> Self {
        Self { exit, steps: 0 }
    }
}

/// How a [`Replayer`] replays.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Check every console and state digest and the end record.
    pub verify: bool,
    /// Show a progress bar on a terminal when the replay takes long.
    pub progress: bool,
    /// The replay will be stepped, stopped at breakpoints and moved back:
    /// where it stops the last exit's access is completed, so every
    /// position is between two instructions, and it takes checkpoints in
    /// memory as it goes.
    pub stepping: bool,
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

/// Why a replay cannot be opened or moved.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace cannot be read or is not valid.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The trace's header describes an invalid VM.
    #[error("the trace's VM configuration is invalid: {0}")]
    Config(#[source] ConfigError),
    /// The trace was recorded on another platform version.
    #[error("the trace was recorded on platform `{recorded}`; this ftvm provides `{ours}`")]
    Platform {
        /// The trace's.
        recorded: String,
        /// This ftvm's.
        ours: &'static str,
    },
    /// The VM cannot be built.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// A checkpoint cannot be restored.
    #[error("cannot restore a checkpoint: {0}")]
    Restore(#[from] RestoreError),
    /// The replay failed (a divergence, KVM).
    #[error(transparent)]
    Run(#[from] RunError),
    /// KVM's debugging failed.
    #[error(transparent)]
    Debug(#[from] DebugError),
    /// The VM's memory tracking failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The vCPU's state cannot be captured for a checkpoint.
    #[error("cannot take a checkpoint: {0}")]
    Capture(#[from] VcpuStateError),
    /// Pages cannot be captured for a checkpoint.
    #[error("cannot take a checkpoint: {0}")]
    Pages(#[from] StateError),
    /// A checkpoint of the trace is damaged or does not fit.
    #[error("the trace's checkpoint after exit {exit} is invalid: {problem}")]
    InvalidCheckpoint {
        /// The exit it follows.
        exit: u64,
        /// What is wrong.
        problem: String,
    },
}

/// What a checkpoint's pages apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// The VM as booted: the kernel loaded, nothing run.
    Boot,
    /// Zeroed memory: the pages are all of memory.
    Zero,
    /// Another checkpoint.
    On(usize),
}

/// A state of the replay after some exit, to start again from: one of the
/// trace's, or one taken in memory.
#[derive(Debug)]
struct Checkpoint {
    exit: u64,
    virtual_time_ns: u64,
    machine: MachineState,
    /// The pages that differ from `base`'s.
    pages: Vec<PageSet>,
    base: Base,
    /// For a checkpoint of the trace: where a reader goes on from it.
    start: Option<replay::Position>,
}

type TraceStream = Progress<TraceReader<BufReader<File>>>;

/// One execution of the trace, from boot or from a checkpoint.
#[derive(Debug)]
struct Run {
    replay: Replay<TraceStream>,
    /// Debug stops since the last counted exit; unknown after a breakpoint
    /// stopped a free run.
    steps: Option<u64>,
    ending: Option<ReplayEnd>,
    /// What KVM was last told to stop for.
    debug: GuestDebug,
    /// The run structure's copy of the registers is the vCPU's now.
    synced: bool,
    /// Pages written, for a stepping replay.
    tracker: Option<MemoryTracker>,
    /// Pages written since `base` was the run's state.
    written: DirtyPages,
    /// What the next checkpoint taken in this run is relative to.
    base: Base,
    /// Where a watched interval started.
    interval: Option<IntervalStart>,
}

/// A replay that can be moved about.
#[derive(Debug)]
pub struct Replayer {
    trace: PathBuf,
    header: Header,
    config: VmConfig,
    options: ReplayOptions,
    /// Exits between state digests: the trace's with `verify`, else none.
    digest_interval: u64,
    /// The exit the trace ends at.
    total_exits: u64,
    console: ConsoleWindow,
    stop: Arc<StopSignal>,
    /// The furthest exit any run has been through.
    reached: u64,
    run: Run,
    checkpoints: Vec<Checkpoint>,
    /// Checkpoints by exit.
    by_exit: BTreeMap<u64, usize>,
}

/// What one KVM_RUN came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Exit,
    Debug {
        pc: u64,
    },
    /// A platform exit left unhandled: the interval wrote a watched page.
    Held,
    Ended,
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
        let checkpoints = load_checkpoints(trace)?;
        if header.platform != PLATFORM_VERSION {
            return Err(ReplayError::Platform {
                recorded: header.platform,
                ours: PLATFORM_VERSION,
            });
        }
        let config = VmConfig::from_header(&header).map_err(ReplayError::Config)?;
        let machine = Machine::new(&config, Cpu::Recorded(&header.cpuid))?;
        let digest_interval = if options.verify {
            header.digest_interval
        } else {
            0
        };
        let stream = Progress::new(
            TraceReader::open(trace)?,
            if options.progress { total_exits } else { 0 },
        );
        let source = ReplaySource::new(stream, options.verify);
        let mut replayer = Self {
            trace: trace.to_owned(),
            header,
            config,
            options,
            digest_interval,
            total_exits,
            console,
            stop,
            reached: 0,
            run: Run::new(Replay::new(machine, source, digest_interval), Base::Boot),
            by_exit: checkpoints
                .iter()
                .enumerate()
                .map(|(index, checkpoint)| (checkpoint.exit, index))
                .collect(),
            checkpoints,
        };
        replayer.begin_run()?;
        Ok(replayer)
    }

    /// The signal that asks the replay to stop.
    pub fn stop_signal(&self) -> Arc<StopSignal> {
        self.stop.clone()
    }

    /// The exit the trace ends at.
    pub fn total_exits(&self) -> u64 {
        self.total_exits
    }

    /// Counted exits so far.
    pub fn exit(&self) -> u64 {
        self.machine().exits()
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
    pub fn ending(&self) -> Option<&ReplayEnd> {
        self.run.ending.as_ref()
    }

    /// The virtual time of the replay, in nanoseconds since boot.
    pub fn now_ns(&self) -> u64 {
        self.machine().virtual_time_ns()
    }

    /// The registers, read from KVM.
    pub fn registers(&self) -> Result<Registers, ReplayError> {
        Ok(self.machine().vcpu().registers()?)
    }

    /// The registers, system registers and pending events, as the last
    /// KVM_RUN left them: a stepping replay makes sure that is now.
    pub fn synced(&self) -> kvm_sync_regs {
        self.machine().vcpu().synced()
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestRam {
        self.machine().memory()
    }

    fn machine(&self) -> &Machine {
        self.run.replay.machine()
    }

    /// Moves on to the last checkpoint at or before exit `exit` when that
    /// lies ahead, skipping the replay up to it, unless that would skip
    /// console output never printed.
    pub fn skip_toward(&mut self, exit: u64) -> Result<(), ReplayError> {
        let ahead = self
            .by_exit
            .range(..=exit)
            .next_back()
            .is_some_and(|(&at, _)| {
                at > self.exit()
                    && self.run.ending.is_none()
                    && self.console.loses_nothing_through(at, self.reached)
            });
        if ahead {
            self.restart_before(exit)?;
        }
        Ok(())
    }

    /// Starts again from the last checkpoint at or before exit `exit`, or
    /// from boot. Console bytes already printed are not printed again.
    pub fn restart_before(&mut self, exit: u64) -> Result<(), ReplayError> {
        let checkpoint = self
            .by_exit
            .range(..=exit)
            .next_back()
            .map(|(_, index)| *index);
        let (machine, after, base) = match checkpoint {
            Some(index) => (
                self.restore(index)?,
                self.checkpoints[index].exit,
                Base::On(index),
            ),
            None => (
                Machine::new(&self.config, Cpu::Recorded(&self.header.cpuid))?,
                0,
                Base::Boot,
            ),
        };
        // The log goes on from the trace's last checkpoint at or before.
        let start = self
            .by_exit
            .range(..=after)
            .rev()
            .find_map(|(_, index)| self.checkpoints[*index].start);
        let reader = match start {
            Some(start) => TraceReader::open_at(&self.trace, start)?,
            None => TraceReader::open(&self.trace)?,
        };
        let stream = Progress::new(reader, 0);
        let source = match checkpoint {
            Some(_) => ReplaySource::resume_after(stream, self.options.verify, after),
            None => ReplaySource::new(stream, self.options.verify),
        };
        self.run = Run::new(Replay::new(machine, source, self.digest_interval), base);
        self.begin_run()
    }

    /// A fresh VM in the state of checkpoint `index`: its chain of pages
    /// from boot, then its machine state.
    fn restore(&self, index: usize) -> Result<Machine, ReplayError> {
        let mut chain = vec![index];
        let root = loop {
            match self.checkpoints[*chain.last().expect("a chain")].base {
                Base::On(base) => chain.push(base),
                root => break root,
            }
        };
        let mut machine = match root {
            Base::Zero => Machine::prepare(&self.header)?,
            _ => Machine::new(&self.config, Cpu::Recorded(&self.header.cpuid))?,
        };
        for &link in chain.iter().rev() {
            for pages in &self.checkpoints[link].pages {
                machine.apply_pages(pages)?;
            }
        }
        machine.apply_state(&self.checkpoints[index].machine)?;
        Ok(machine)
    }

    /// Readies a new run: for stepping, its debug state, its memory
    /// tracker, and a settled vCPU whose copy in the run structure is
    /// fresh; exit 0 (boot) is done if it was not.
    fn begin_run(&mut self) -> Result<(), ReplayError> {
        if !self.options.stepping {
            return Ok(());
        }
        let machine = self.run.replay.machine_mut();
        machine.vcpu_mut().sync_debug_state();
        let tracker = machine.memory_tracker();
        tracker.start()?;
        self.run.tracker = Some(tracker);
        self.run.synced = false;
        self.settle()
    }

    /// Runs freely until exit `exit` is done (and its interrupt injected),
    /// or the replay ends; `progress` hears every exit.
    pub fn run_to_exit(
        &mut self,
        exit: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Stop, ReplayError> {
        while self.exit() < exit {
            if self.resume(GuestDebug::default(), None)? == Outcome::Ended {
                return Ok(Stop::Ended);
            }
            self.checkpoint_if_due()?;
            progress(self.exit());
        }
        self.settle()?;
        Ok(Stop::Arrived)
    }

    /// Runs to the recorded end.
    pub fn run_to_end(&mut self) -> Result<&ReplayEnd, ReplayError> {
        while self.resume(GuestDebug::default(), None)? != Outcome::Ended {}
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
        if stop != Stop::Ended {
            self.settle()?;
        }
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
                Outcome::Exit => {
                    self.checkpoint_if_due()?;
                    if watching {
                        self.begin_interval()?;
                    }
                    if interrupted() {
                        return Ok(Stop::Interrupted);
                    }
                }
                // The interval wrote a watched page, or hit a breakpoint
                // somewhere: step it from its start.
                Outcome::Held | Outcome::Debug { .. } if watching => {
                    if let Some(stop) = self.step_interval(breakpoints, watches)? {
                        return Ok(stop);
                    }
                    if interrupted() {
                        return Ok(Stop::Interrupted);
                    }
                }
                Outcome::Debug { pc } => {
                    self.run.steps = None;
                    return Ok(Stop::Breakpoint(pc));
                }
                Outcome::Held => unreachable!("nothing holds an exit of an unwatched run"),
                Outcome::Ended => return Ok(Stop::Ended),
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

    /// The pages written since the last look, noted for the next
    /// checkpoint too.
    fn take_written(&mut self) -> Result<DirtyPages, ReplayError> {
        let Some(tracker) = &self.run.tracker else {
            return Ok(DirtyPages::default());
        };
        let written = tracker.dirty_pages()?;
        written
            .iter()
            .for_each(|page| self.run.written.insert(page));
        Ok(written)
    }

    /// A watched interval starts here: save the vCPU, bring the copy of RAM
    /// up to date.
    fn begin_interval(&mut self) -> Result<(), ReplayError> {
        self.settle()?;
        let written = self.take_written()?;
        let vcpu = self.machine().vcpu().capture()?;
        let run = &mut self.run;
        let memory = run.replay.machine().memory();
        match &mut run.interval {
            Some(interval) => {
                interval.ram.advance(memory, &written);
                interval.vcpu = vcpu;
                interval.steps = run.steps;
            }
            None => {
                run.interval = Some(IntervalStart {
                    ram: ShadowRam::new(memory),
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
        if let Some(error) = self
            .run
            .interval
            .as_mut()
            .and_then(|interval| interval.failure.take())
        {
            return Err(error.into());
        }
        // Finish what KVM has pending, then put the state back.
        self.run.replay.machine_mut().vcpu_mut().discard_exit()?;
        let written = self.take_written()?;
        let run = &mut self.run;
        let interval = run
            .interval
            .as_mut()
            .expect("a watched run has begun its interval");
        let machine = run.replay.machine_mut();
        interval.ram.restore(machine.memory(), &written);
        machine.vcpu_mut().restore(&interval.vcpu)?;
        run.steps = interval.steps;
        run.synced = false;
        self.settle()?;
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
            Outcome::Ended => return Ok(Stop::Ended),
            Outcome::Debug { .. } => self.run.steps = self.run.steps.map(|steps| steps + 1),
            Outcome::Exit => self.settle()?,
            Outcome::Held => unreachable!("a step holds no exit"),
        }
        Ok(Stop::Arrived)
    }

    /// Completes the last exit's access where that is still to do (a free
    /// run leaves it to the next KVM_RUN), and refreshes the run
    /// structure's copy of the registers.
    fn settle(&mut self) -> Result<(), ReplayError> {
        while self.run.ending.is_none() && !(self.run.synced && self.machine().vcpu().settled()) {
            match self.resume_paused(GuestDebug::default(), None, true)? {
                Outcome::Held => unreachable!("a pause holds no exit"),
                // Rarely, completing the access makes another exit.
                Outcome::Exit | Outcome::Debug { .. } | Outcome::Ended => {}
            }
        }
        Ok(())
    }

    /// Takes a checkpoint in memory here when the last one at or before
    /// this exit is [`MEMORY_CHECKPOINT_NS`] of virtual time or more back.
    fn checkpoint_if_due(&mut self) -> Result<(), ReplayError> {
        if !self.options.stepping {
            return Ok(());
        }
        let exit = self.exit();
        let last_ns = self
            .by_exit
            .range(..=exit)
            .next_back()
            .map_or(0, |(_, index)| self.checkpoints[*index].virtual_time_ns);
        if self.now_ns() < last_ns + MEMORY_CHECKPOINT_NS {
            return Ok(());
        }
        self.settle()?;
        if self.run.ending.is_some() || self.by_exit.contains_key(&self.exit()) {
            return Ok(());
        }
        self.take_written()?;
        let machine = self.machine().capture()?;
        let tracker = self
            .run
            .tracker
            .as_ref()
            .expect("a stepping run tracks pages");
        let pages = tracker.capture(&self.run.written)?;
        let index = self.checkpoints.len();
        self.checkpoints.push(Checkpoint {
            exit: self.exit(),
            virtual_time_ns: self.now_ns(),
            machine,
            pages: vec![pages],
            base: self.run.base,
            start: None,
        });
        self.by_exit.insert(self.exit(), index);
        self.run.base = Base::On(index);
        self.run.written = DirtyPages::default();
        Ok(())
    }

    /// One KVM_RUN, to a debug exit or to a counted exit it handles; one
    /// after which the guest had written a page of `hold` is held, not
    /// handled.
    fn resume(&mut self, debug: GuestDebug, hold: Option<&[u64]>) -> Result<Outcome, ReplayError> {
        self.resume_paused(debug, hold, false)
    }

    fn resume_paused(
        &mut self,
        debug: GuestDebug,
        hold: Option<&[u64]>,
        pause: bool,
    ) -> Result<Outcome, ReplayError> {
        if self.run.ending.is_some() {
            return Ok(Outcome::Ended);
        }
        let run = &mut self.run;
        if run.debug != debug {
            run.replay.machine().vcpu().set_guest_debug(debug)?;
            run.debug = debug;
        }
        let (tracker, interval, written) = (&run.tracker, &mut run.interval, &mut run.written);
        let mut hold = || match (hold, tracker, interval.as_mut()) {
            (Some(watched), Some(tracker), Some(interval)) => match tracker.dirty_pages() {
                Ok(pages) => {
                    pages.iter().for_each(|page| written.insert(page));
                    interval.ram.note_written(&pages, watched)
                }
                Err(error) => {
                    interval.failure = Some(error);
                    true
                }
            },
            _ => false,
        };
        let result = run
            .replay
            .resume(&mut self.console, &self.stop, pause, &mut hold);
        run.synced = true;
        self.reached = self.reached.max(run.replay.machine().exits());
        match result {
            Ok(Resumed::Exit) => {
                run.steps = Some(0);
                Ok(Outcome::Exit)
            }
            Ok(Resumed::Paused) => Ok(Outcome::Exit),
            Ok(Resumed::Debug(debug_exit)) => Ok(Outcome::Debug { pc: debug_exit.pc }),
            Ok(Resumed::Held) => Ok(Outcome::Held),
            Ok(Resumed::End(end)) => self.conclude(Ok(end)),
            Err(error) => self.conclude(Err(error)),
        }
    }

    /// Ends the replay as the recorded run ended, checking the end.
    fn conclude(&mut self, result: Result<VmEnd, RunError>) -> Result<Outcome, ReplayError> {
        // The end is at the last exit (or between exits, for a stop).
        self.run.steps = Some(0);
        self.run.ending = Some(self.run.replay.finish(result)?);
        Ok(Outcome::Ended)
    }
}

/// The trace's checkpoints, decoded: any damage, another version or
/// platform, or a chain that does not start whole refuses the trace before
/// anything of it runs.
fn load_checkpoints(trace: &Path) -> Result<Vec<Checkpoint>, ReplayError> {
    let mut reader = TraceReader::open(trace)?;
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut pages = Vec::new();
    let mut time_ns = 0;
    loop {
        let start = reader.position();
        let Some(record) = reader.next_record()? else {
            return Ok(checkpoints);
        };
        let invalid = |exit, problem: String| ReplayError::InvalidCheckpoint { exit, problem };
        match record {
            Record::Event {
                event: ft_logging::Event::Time { ns },
                ..
            } => time_ns = ns,
            Record::CheckpointPages { exit, pages: bytes } => {
                pages.push(PageSet::decode(&bytes).map_err(|e| invalid(exit, e.to_string()))?);
            }
            Record::Checkpoint {
                exit,
                whole,
                machine,
            } => {
                let machine =
                    MachineState::decode(&machine).map_err(|e| invalid(exit, e.to_string()))?;
                if machine.exit() != exit {
                    return Err(invalid(
                        exit,
                        format!("its machine state is after exit {}", machine.exit()),
                    ));
                }
                if checkpoints.last().is_some_and(|last| last.exit >= exit) {
                    return Err(invalid(exit, "it is not after the one before".into()));
                }
                let base = match (whole, checkpoints.len()) {
                    (true, _) => Base::Zero,
                    (false, 0) => {
                        return Err(invalid(exit, "the first checkpoint is not whole".into()));
                    }
                    (false, previous) => Base::On(previous - 1),
                };
                checkpoints.push(Checkpoint {
                    exit,
                    virtual_time_ns: time_ns,
                    machine,
                    pages: std::mem::take(&mut pages),
                    base,
                    start: Some(start),
                });
            }
            _ => {}
        }
    }
}

impl Run {
    fn new(replay: Replay<TraceStream>, base: Base) -> Self {
        Self {
            replay,
            steps: Some(0),
            ending: None,
            debug: GuestDebug::default(),
            synced: false,
            tracker: None,
            written: DirtyPages::default(),
            base,
            interval: None,
        }
    }
}

/// The exit status of a replay that ended so.
pub fn ending_status(ending: &ReplayEnd) -> u8 {
    match ending {
        ReplayEnd::Stopped(reason) => StopReason::exit_status(*reason),
        ReplayEnd::Ended { recorded, .. } => recorded.status,
    }
}
