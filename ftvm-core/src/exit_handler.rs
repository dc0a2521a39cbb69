//! The deterministic core: what happens at each counted exit.
//!
//! Order at exit k (docs/DESIGN.md §3): ask the event source for the events due
//! at k and apply them in log order (a time sample comes first, since a PIT
//! or CMOS read at k needs it); complete the access; fold the exit into the
//! signature and its output into the digests; hand all that back to the
//! source (a recorder writes it, a replayer checks it); emit the output;
//! then the vCPU layer decides injection from PIC state alone. This handler
//! never calls KVM, so tests can feed it synthetic exits.

use ft_logging::{
    DiskOp, Event, EventSource, ExitDone, ExitQuery, ExitSignature, MSR_TSC, OutputSink, SinkError,
    SourceError, StopReason, StreamDigest, StreamHasher,
};
use serde::{Deserialize, Serialize};
use tracing::{trace, warn};

use crate::effect::{Effect, GuestEnd};
use crate::memory::GuestRam;
use crate::platform::{Devices, Platform, PlatformState};
use crate::state::InvalidState;

const RFLAGS_IF: u64 = 1 << 9;

/// A synchronous exit as KVM reported it, with its data buffers.
#[derive(Debug)]
pub enum Access<'a> {
    /// A port read.
    PioIn {
        /// The port.
        port: u16,
        /// Where the bytes read go.
        data: &'a mut [u8],
    },
    /// A port write.
    PioOut {
        /// The port.
        port: u16,
        /// The bytes written.
        data: &'a [u8],
    },
    /// An MMIO read.
    MmioRead {
        /// The guest-physical address.
        addr: u64,
        /// Where the bytes read go.
        data: &'a mut [u8],
    },
    /// An MMIO write.
    MmioWrite {
        /// The guest-physical address.
        addr: u64,
        /// The bytes written.
        data: &'a [u8],
    },
    /// A read of a filtered MSR.
    RdMsr {
        /// The MSR.
        index: u32,
        /// Where its value goes.
        value: &'a mut u64,
        /// Set to 1 to raise #GP.
        fault: &'a mut u8,
    },
    /// A write of a filtered MSR.
    WrMsr {
        /// The MSR.
        index: u32,
        /// The value written.
        value: u64,
        /// Set to 1 to raise #GP.
        fault: &'a mut u8,
    },
    /// HLT.
    Hlt,
    /// The interrupt window opened (never requested; counted if it comes).
    IrqWindowOpen,
    /// A triple fault.
    Shutdown,
}

impl Access<'_> {
    fn kind(&self) -> u8 {
        match self {
            Access::PioIn { .. } => 1,
            Access::PioOut { .. } => 2,
            Access::MmioRead { .. } => 3,
            Access::MmioWrite { .. } => 4,
            Access::RdMsr { .. } => 5,
            Access::WrMsr { .. } => 6,
            Access::Hlt => 7,
            Access::IrqWindowOpen => 8,
            Access::Shutdown => 9,
        }
    }
}

/// An access that has been completed, waiting for the registers to finish
/// its exit.
#[derive(Debug, Clone, Copy)]
#[must_use = "an exit is finished by ExitHandler::finish"]
pub struct Completed {
    kind: u8,
    address: u64,
    data: u64,
    halt: bool,
}

/// How a run ended without failing: a value, never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest ended it.
    Guest(GuestEnd),
    /// The host asked it to stop.
    Stopped(StopReason),
    /// A replayed log ends here: the recorded run was stopped, or failed,
    /// at this point, and the replay ends as it did.
    LogEnded,
}

/// What the vCPU does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The guest runs on.
    Continue,
    /// The run ended.
    End(VmEnd),
}

/// The first half of an exit: its access completed, or the run ended
/// before it could be (a stop, the end of a replayed log).
#[derive(Debug, Clone, Copy)]
#[must_use = "a completed access is finished by ExitHandler::finish"]
pub enum Step {
    /// The access is done; `finish` ends the exit.
    Completed(Completed),
    /// The run ended before the access.
    End(VmEnd),
}

/// Why the core cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The event source failed (a divergence, a log that cannot be read or written, a lost flag).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An output could not leave.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The access reads a clock and the events have no time sample.
    #[error("exit {exit} reads a clock but its events hold no time sample")]
    MissingTime {
        /// The exit.
        exit: u64,
    },
    /// The guest reads the TSC and the events have no value for it.
    #[error("exit {exit} reads MSR {index:#x} but its events hold no value for it")]
    MissingMsr {
        /// The exit.
        exit: u64,
        /// The MSR.
        index: u32,
    },
}

/// The deterministic core: the platform, and what happens at each counted exit.
#[derive(Debug, Default)]
pub struct ExitHandler {
    platform: Platform,
    /// Exit 0, boot, is done.
    started: bool,
    /// Exits completed.
    exits: u64,
    signature: ExitSignature,
    console_digest: StreamHasher,
    /// Events applied at the current exit (kept to reuse the allocation).
    events: Vec<Event>,
    effects: Vec<Effect>,
    console: Vec<u8>,
    warned_msrs: Vec<u32>,
}

/// The state of the deterministic core between two exits: where the run
/// is (booted, exits completed), the exit signature and console digest so
/// far, and every device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreState {
    started: bool,
    exits: u64,
    signature: ExitSignature,
    console: StreamHasher,
    platform: PlatformState,
}

impl CoreState {
    /// Exits completed (the state is taken after exit `exits()`).
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// The exit signature after the last exit.
    pub fn signature(&self) -> ExitSignature {
        self.signature
    }

    /// The digest of the console output so far.
    pub fn console(&self) -> StreamDigest {
        self.console.digest()
    }

    /// The devices' state.
    pub fn platform(&self) -> &PlatformState {
        &self.platform
    }
}

/// The signature's kind for a disk request: outputs other than the
/// console fold into the exit signature, so a backup or replay that would
/// write something else to the disk diverges at that exit.
const DISK_REQUEST_KIND: u8 = 10;
/// The signature's kind for a transmitted frame.
const FRAME_KIND: u8 = 11;

impl ExitHandler {
    /// The core of a VM with `platform`, before boot.
    pub fn new(platform: Platform) -> Self {
        Self {
            platform,
            ..Self::default()
        }
    }

    /// The core in `state`, for a VM with `devices` and `memory`; refused
    /// when a device's state is one it cannot reach.
    pub fn from_state(
        devices: Devices,
        memory: &GuestRam,
        state: &CoreState,
    ) -> Result<Self, InvalidState> {
        Ok(Self {
            platform: Platform::from_state(devices, memory, &state.platform)?,
            started: state.started,
            exits: state.exits,
            signature: state.signature,
            console_digest: state.console.clone(),
            ..Self::default()
        })
    }

    /// The core's state; taken between exits.
    pub fn state(&self) -> CoreState {
        CoreState {
            started: self.started,
            exits: self.exits,
            signature: self.signature,
            console: self.console_digest.clone(),
            platform: self.platform.state(),
        }
    }

    /// Exits completed so far.
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// The virtual time of the last time sample applied, in nanoseconds
    /// since boot.
    pub fn virtual_time_ns(&self) -> u64 {
        self.platform.pit.now_ns()
    }

    /// Whether exit 0 (boot) is done.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The exit signature after the last exit.
    pub fn signature(&self) -> ExitSignature {
        self.signature
    }

    /// The digest of everything the guest wrote to its console.
    pub fn console(&self) -> StreamDigest {
        self.console_digest.digest()
    }

    /// Exit 0: the inputs the guest sees before its first instruction.
    pub fn boot(&mut self, source: &mut dyn EventSource) -> Result<Flow, CoreError> {
        let query = ExitQuery {
            needs_time: true,
            ..self.query(false)
        };
        if let Some(end) = self.take_events(&query, source)? {
            return Ok(Flow::End(end));
        }
        self.started = true;
        self.commit(source, true)?;
        Ok(Flow::Continue)
    }

    /// The first half of exit k: apply its events, complete the access. The
    /// exit counts as completed once its events could be had.
    pub fn access(
        &mut self,
        access: Access<'_>,
        source: &mut dyn EventSource,
    ) -> Result<Step, CoreError> {
        let needs_time = match &access {
            Access::PioIn { port, .. } | Access::PioOut { port, .. } => {
                Platform::port_needs_time(*port)
            }
            _ => false,
        };
        let query = ExitQuery {
            needs_time,
            msr_read: match &access {
                Access::RdMsr { index, .. } if *index == MSR_TSC => Some(*index),
                _ => None,
            },
            exit: self.exits + 1,
            ..self.query(false)
        };
        if let Some(end) = self.take_events(&query, source)? {
            return Ok(Step::End(end));
        }
        self.exits = query.exit;
        self.effects.clear();
        let kind = access.kind();
        let (address, data) = match access {
            Access::PioIn { port, data } => {
                self.platform.port_in(port, data);
                (u64::from(port), ExitSignature::data_word(data))
            }
            Access::PioOut { port, data } => {
                self.platform.port_out(port, data, &mut self.effects);
                (u64::from(port), ExitSignature::data_word(data))
            }
            Access::MmioRead { addr, data } => {
                self.platform.mmio_read(addr, data);
                (addr, ExitSignature::data_word(data))
            }
            Access::MmioWrite { addr, data } => {
                self.platform.mmio_write(addr, data, &mut self.effects);
                (addr, ExitSignature::data_word(data))
            }
            Access::RdMsr {
                index,
                value,
                fault,
            } => {
                *value = self.read_msr(index, fault)?;
                (u64::from(index), *value)
            }
            Access::WrMsr {
                index,
                value,
                fault,
            } => {
                self.write_msr(index, fault);
                (u64::from(index), value)
            }
            Access::Shutdown => {
                self.effects.push(Effect::End(GuestEnd::TripleFault));
                (0, 0)
            }
            Access::Hlt | Access::IrqWindowOpen => (0, 0),
        };
        Ok(Step::Completed(Completed {
            kind,
            address,
            data,
            halt: kind == Access::Hlt.kind(),
        }))
    }

    /// The second half of exit k, once the guest's registers are known: fold
    /// the signature, commit the events, emit outputs, and wait in HLT.
    pub fn finish(
        &mut self,
        completed: Completed,
        rip: u64,
        rflags: u64,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
    ) -> Result<Flow, CoreError> {
        self.signature
            .fold(completed.kind, completed.address, completed.data, rip);
        trace!(
            exit = self.exits,
            kind = completed.kind,
            address = format_args!("{:#x}", completed.address),
            data = format_args!("{:#x}", completed.data),
            rip = format_args!("{rip:#x}"),
            events = ?self.events,
            "exit"
        );
        let mut end = None;
        self.console.clear();
        for effect in &self.effects {
            match effect {
                Effect::Console(byte) => self.console.push(*byte),
                Effect::Disk(request) => {
                    let (sector, data) = match &request.op {
                        DiskOp::Read { sector, len } => (*sector, u64::from(*len)),
                        DiskOp::Write { sector, data } => (*sector, ExitSignature::data_word(data)),
                        DiskOp::Flush => (0, 0),
                    };
                    self.signature
                        .fold(DISK_REQUEST_KIND, request.id, data, sector);
                }
                Effect::Net(frame) => self.signature.fold(
                    FRAME_KIND,
                    frame.len() as u64,
                    ExitSignature::data_word(frame),
                    0,
                ),
                Effect::End(reason) => end = Some(VmEnd::Guest(*reason)),
            }
        }
        self.console_digest.update(&self.console);
        // A halt waits here for an interrupt (and more events) unless one is
        // pending already.
        let complete = !completed.halt || self.platform.interrupt_pending();
        self.commit(source, complete)?;
        if !self.console.is_empty() {
            sink.console(self.exits, &self.console)?;
        }
        for effect in self.effects.drain(..) {
            match effect {
                Effect::Disk(request) => sink.disk(self.exits, request)?,
                Effect::Net(frame) => sink.net(self.exits, frame)?,
                Effect::Console(_) | Effect::End(_) => {}
            }
        }
        if end.is_none() && completed.halt {
            end = self.halt(rflags, source, sink)?;
        }
        match end {
            Some(end) => {
                sink.flush()?;
                Ok(Flow::End(end))
            }
            None => Ok(Flow::Continue),
        }
    }

    /// Whether the PIC asserts INT to the CPU.
    pub fn interrupt_pending(&self) -> bool {
        self.platform.interrupt_pending()
    }

    /// The CPU's interrupt acknowledge cycle: the vector to inject.
    pub fn acknowledge_interrupt(&mut self) -> u8 {
        self.platform.pic.acknowledge()
    }

    /// A halted guest waits for events at this same exit until an
    /// interrupt is pending. Returns the end of the VM if it halted for good
    /// or the run ended meanwhile.
    fn halt(
        &mut self,
        rflags: u64,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
    ) -> Result<Option<VmEnd>, CoreError> {
        if rflags & RFLAGS_IF == 0 {
            return Ok(Some(VmEnd::Guest(GuestEnd::Halted)));
        }
        sink.flush()?;
        while !self.platform.interrupt_pending() {
            let query = self.query(true);
            if let Some(end) = self.take_events(&query, source)? {
                return Ok(Some(end));
            }
            if self.events.is_empty() {
                return Ok(Some(VmEnd::Guest(GuestEnd::Idle)));
            }
            self.commit(source, self.platform.interrupt_pending())?;
        }
        Ok(None)
    }

    fn query(&self, halted: bool) -> ExitQuery {
        ExitQuery {
            exit: self.exits,
            halted,
            timer_deadline_ns: self.platform.pit.next_irq0_ns(),
            serial_room: self.platform.uart.rx_room(),
            io_pending: self.platform.io_pending(),
            net_rx_room: self.platform.net_rx_room(),
            ..ExitQuery::default()
        }
    }

    /// Asks the source for this exit's events and applies them in order;
    /// or the end of the run, when the source says the run ends here.
    fn take_events(
        &mut self,
        query: &ExitQuery,
        source: &mut dyn EventSource,
    ) -> Result<Option<VmEnd>, CoreError> {
        self.events.clear();
        match source.events(query, &mut self.events) {
            Ok(()) => {}
            Err(SourceError::Stopped(reason)) => return Ok(Some(VmEnd::Stopped(reason))),
            Err(SourceError::LogEnded) => return Ok(Some(VmEnd::LogEnded)),
            // Only a halted guest waits for events: it waits forever.
            Err(SourceError::Deadlock) => return Ok(Some(VmEnd::Guest(GuestEnd::Idle))),
            Err(error) => return Err(error.into()),
        }
        for event in &self.events {
            match event {
                Event::WallClock { unix_ns } => self.platform.rtc.set_wall_clock(*unix_ns),
                Event::Time { ns } => self.platform.advance_time(*ns),
                Event::SerialIn(bytes) => self.platform.receive_serial(bytes),
                Event::MsrRead { .. } => {}
                Event::DiskDone {
                    request,
                    status,
                    data,
                } => self.platform.complete_disk(*request, *status, data),
                Event::NetRx(frame) => self.platform.receive_frame(frame),
            }
        }
        let has_time = self.events.iter().any(|e| matches!(e, Event::Time { .. }));
        if query.needs_time && !has_time {
            return Err(CoreError::MissingTime { exit: query.exit });
        }
        Ok(None)
    }

    /// Hands what happened at this exit back to the source.
    fn commit(&mut self, source: &mut dyn EventSource, complete: bool) -> Result<(), CoreError> {
        source.exit_done(&ExitDone {
            exit: self.exits,
            events: &self.events,
            signature: self.signature,
            console: self.console_digest.digest(),
            output: self
                .effects
                .iter()
                .any(|effect| !matches!(effect, Effect::End(_))),
            complete,
        })?;
        Ok(())
    }

    /// Only the TSC reads a value (a logged one); every other filtered MSR
    /// is hidden from the guest, which gets #GP as on a CPU without it.
    fn read_msr(&mut self, index: u32, fault: &mut u8) -> Result<u64, CoreError> {
        if index != MSR_TSC {
            *fault = 1;
            return Ok(0);
        }
        self.events
            .iter()
            .find_map(|event| match event {
                Event::MsrRead { index: i, value } if *i == index => Some(*value),
                _ => None,
            })
            .ok_or(CoreError::MissingMsr {
                exit: self.exits,
                index,
            })
    }

    fn write_msr(&mut self, index: u32, fault: &mut u8) {
        if index != MSR_TSC {
            *fault = 1;
        } else if !self.warned_msrs.contains(&index) {
            // The virtual TSC follows virtual time; a guest cannot move it.
            self.warned_msrs.push(index);
            warn!(
                msr = format_args!("{index:#x}"),
                "guest write to the TSC ignored"
            );
        }
    }
}

#[cfg(test)]
mod tests;
