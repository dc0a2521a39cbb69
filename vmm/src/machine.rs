//! A VM built from a validated config, ready to run with any pair of event
//! source and output sink; and a VM captured as data and built back from
//! it (the `vm-state` crate says what a state holds).
//!
//! Capture happens at an exit boundary: [`Machine::run_until`] pauses
//! after an exit with KVM's pending access completed, then
//! [`Machine::capture`] (vCPU and core) or [`Machine::capture_vm`] (with
//! the configuration and all memory) takes the state, and `run_until` or
//! [`Machine::run`] goes on. [`Machine::restore`] builds a VM from a whole
//! state; a standby receiving memory in rounds uses [`Machine::prepare`],
//! [`Machine::apply_pages`] per round and [`Machine::apply_state`] last.
//! Pages that changed come from [`Machine::memory_tracker`].

use std::sync::Arc;

use ft_logging::{CpuidLeaf, End, EndReason, EventSource, Header, OutputSink};
use prometheus::IntCounter;
use sha2::{Digest, Sha256};
use tracing::warn;
use vm_state::{DirtyPages, FtState, MachineState, PageSet, StateError, VmState, check_header};

use crate::boot::{self, BootError};
use crate::exit_status::{INCOMPATIBLE_HOST, KVM_FAILURE, PAIRING_FAILURE};
use crate::host::StopSignal;
use crate::vm_config::{ConfigError, VmConfig};
use crate::vstate::{
    MemoryTracker, Ran, Resumed, RunError, RunIo, Vcpu, VcpuStateError, Vm, VmEnd, VmError,
};
use ftvm_core::effect::GuestEnd;
use ftvm_core::exit_handler::ExitHandler;
use ftvm_core::memory::GuestRam;
use ftvm_core::platform::{Devices, PLATFORM_VERSION, Platform};
use ftvm_core::state::InvalidState;

/// Why a VM cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// KVM refused.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The kernel cannot be loaded.
    #[error(transparent)]
    Boot(#[from] BootError),
}

/// Why a VM could not be built from a state. Nothing of the state has run;
/// a machine that [`Machine::apply_state`] or [`Machine::apply_pages`]
/// refused must be dropped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The state is damaged, of another version or platform.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state's configuration is invalid.
    #[error("the state's VM configuration is invalid: {0}")]
    Config(#[source] ConfigError),
    /// The VM cannot be made.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// A device's state is refused.
    #[error(transparent)]
    Device(#[from] InvalidState),
    /// KVM refused the vCPU's state.
    #[error(transparent)]
    Vcpu(#[from] VcpuStateError),
}

impl RestoreError {
    /// The exit status of a standby that got this state: 117 when this
    /// host cannot present its platform or CPU model, 123 when KVM failed,
    /// 115 when the state is damaged or invalid.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::State(error) if error.is_incompatible() => INCOMPATIBLE_HOST,
            Self::Machine(MachineError::Vm(VmError::Cpuid(_))) => INCOMPATIBLE_HOST,
            Self::Machine(_) => KVM_FAILURE,
            Self::State(_) | Self::Config(_) | Self::Device(_) | Self::Vcpu(_) => PAIRING_FAILURE,
        }
    }
}

/// Which CPU the guest gets.
#[derive(Debug, Clone, Copy)]
pub enum Cpu<'a> {
    /// Our model as this host presents it.
    Model,
    /// A recorded model, which this host must be able to present.
    Recorded(&'a [CpuidLeaf]),
}

/// A VM: KVM's VM and vCPU, and the deterministic core that handles its exits.
#[derive(Debug)]
pub struct Machine {
    // The vCPU goes first: it must close before the VM and its memory.
    vcpu: Vcpu,
    handler: ExitHandler,
    cpuid: Vec<CpuidLeaf>,
    devices: Devices,
    /// Until the guest first runs: the pages written since the VM was made
    /// (the rest of its memory is zeros).
    written: Option<DirtyPages>,
    vm: Vm,
}

impl Machine {
    /// Creates the VM, loads the kernel and puts the vCPU at its PVH entry.
    pub fn new(config: &VmConfig, cpu: Cpu<'_>) -> Result<Self, MachineError> {
        let mut machine = Self::empty(config, cpu)?;
        boot::load(
            machine.vm.memory(),
            &config.kernel.image,
            &config.guest_cmdline(),
        )?;
        machine.written = None;
        Ok(machine)
    }

    /// The VM of `config` with zeroed memory and nothing loaded.
    fn empty(config: &VmConfig, cpu: Cpu<'_>) -> Result<Self, MachineError> {
        let vm = Vm::new(config.mem_mib)?;
        let cpuid = match cpu {
            Cpu::Model => vm.cpu_model()?,
            Cpu::Recorded(recorded) => {
                vm.check_cpuid(recorded)?;
                recorded.to_vec()
            }
        };
        let vcpu = vm.create_vcpu(config.pvh.entry, &cpuid)?;
        Ok(Self {
            vcpu,
            handler: ExitHandler::new(Platform::new(config.devices, vm.memory())),
            cpuid,
            devices: config.devices,
            written: Some(DirtyPages::default()),
            vm,
        })
    }

    /// Counts every exit in `exits` from now on.
    pub fn count_exits(&mut self, exits: IntCounter) {
        self.vcpu.count_exits(exits);
    }

    /// A VM for `header`'s configuration and CPU model, with zeroed memory,
    /// to receive pages ([`apply_pages`](Self::apply_pages)) and then a
    /// machine state ([`apply_state`](Self::apply_state)). Refused when
    /// this host cannot present the CPU model or the platform.
    pub fn prepare(header: &Header) -> Result<Self, RestoreError> {
        check_header(header)?;
        let config = VmConfig::from_header(header).map_err(RestoreError::Config)?;
        Ok(Self::empty(&config, Cpu::Recorded(&header.cpuid))?)
    }

    /// The VM a whole state describes, at the exit it was taken after.
    pub fn restore(state: &VmState) -> Result<Self, RestoreError> {
        let mut machine = Self::prepare(&state.header)?;
        machine.apply_pages(&state.memory)?;
        machine.apply_state(&state.machine)?;
        Ok(machine)
    }

    /// Writes pages into guest memory; a set with a page outside RAM
    /// writes none.
    pub fn apply_pages(&mut self, pages: &PageSet) -> Result<(), RestoreError> {
        pages.apply(self.vm.memory(), self.written.as_ref())?;
        if let Some(written) = &mut self.written {
            pages
                .data_page_numbers()
                .for_each(|page| written.insert(page));
        }
        Ok(())
    }

    /// Puts the vCPU and the core in `state`. Every device state is checked
    /// before anything is set.
    pub fn apply_state(&mut self, state: &MachineState) -> Result<(), RestoreError> {
        let handler = ExitHandler::from_state(self.devices, self.vm.memory(), &state.core)?;
        self.vcpu.restore(&state.vcpu)?;
        self.handler = handler;
        Ok(())
    }

    /// The vCPU's and the core's state, at a settled exit boundary: after
    /// [`run_until`](Self::run_until) paused, after a stop, or before the
    /// first run. The FT bookkeeping is left for the caller to fill.
    pub fn capture(&self) -> Result<MachineState, VcpuStateError> {
        Ok(MachineState {
            vcpu: self.vcpu.capture()?,
            core: self.handler.state(),
            ft: FtState::default(),
        })
    }

    /// The whole VM: `header` (its configuration, see
    /// [`header`](Self::header)), its machine state and every page.
    pub fn capture_vm(&self, header: Header) -> Result<VmState, VcpuStateError> {
        Ok(VmState {
            header,
            machine: self.capture()?,
            memory: PageSet::capture_all(self.vm.memory()),
        })
    }

    /// Guest memory and its dirty pages, for any thread.
    pub fn memory_tracker(&self) -> MemoryTracker {
        self.vm.memory_tracker()
    }

    /// Runs the guest, from its entry point or from where it paused or was
    /// restored, until it ends. With a nonzero `digest_interval` the source
    /// gets a state digest every that many exits.
    pub fn run(
        &mut self,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        digest_interval: u64,
    ) -> Result<VmEnd, RunError> {
        self.written = None;
        match self
            .vcpu
            .run(&mut self.handler, source, sink, stop, digest_interval, None)?
        {
            Ran::Ended(end) => Ok(end),
            Ran::Paused => unreachable!("a run without a pause exit never pauses"),
        }
    }

    /// As [`run`](Self::run), but pauses at the first settled exit boundary
    /// at or after exit `exit` (just after it, unless completing its access
    /// made KVM exit again): [`exits`](Self::exits) says where.
    pub fn run_until(
        &mut self,
        source: &mut dyn EventSource,
        sink: &mut dyn OutputSink,
        stop: &Arc<StopSignal>,
        digest_interval: u64,
        exit: u64,
    ) -> Result<Ran, RunError> {
        self.written = None;
        self.vcpu.run(
            &mut self.handler,
            source,
            sink,
            stop,
            digest_interval,
            Some(exit),
        )
    }

    /// One KVM_RUN (see [`Vcpu::resume`]): to the next counted exit, which
    /// is handled unless `hold` says otherwise, to a debug exit, or, with
    /// `pause`, to the settled exit boundary.
    pub fn resume(
        &mut self,
        io: RunIo<'_>,
        pause: bool,
        hold: &mut dyn FnMut() -> bool,
    ) -> Result<Resumed, RunError> {
        self.written = None;
        if let Some(end) = self.vcpu.boot(&mut self.handler, io.source)? {
            return Ok(Resumed::End(end));
        }
        self.vcpu.resume(&mut self.handler, io, pause, hold)
    }

    /// The header that, with the events, determines this machine's run.
    pub fn header(&self, config: &VmConfig, digest_interval: u64) -> Header {
        Header {
            platform: PLATFORM_VERSION.to_owned(),
            mem_mib: config.mem_mib,
            cmdline: config.cmdline.clone(),
            kernel_name: config.kernel.name.clone(),
            kernel: config.kernel.image.to_vec(),
            kernel_sha256: Sha256::digest(&config.kernel.image).into(),
            cpuid: self.cpuid.clone(),
            digest_interval,
            disk: config.devices.disk,
            net: config.devices.net,
        }
    }

    /// The end record of a run that ended for `reason` with `status`.
    pub fn end(&self, reason: EndReason, status: u8) -> End {
        // The state is comparable only where the guest itself ended the run,
        // at an exit; a stop or a failure falls between exits.
        let state = match reason {
            EndReason::Stopped(_) | EndReason::Failed(_) => None,
            _ => self
                .vcpu
                .state_digest()
                .inspect_err(|error| warn!(%error, "no final state digest"))
                .ok(),
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

    /// Exits completed so far.
    pub fn exits(&self) -> u64 {
        self.handler.exits()
    }

    /// The guest's registers and a hash of its memory, now.
    pub fn state_digest(&self) -> Result<ft_logging::StateDigest, RunError> {
        self.vcpu.state_digest()
    }

    /// The virtual time of the last time sample applied, in nanoseconds
    /// since boot.
    pub fn virtual_time_ns(&self) -> u64 {
        self.handler.virtual_time_ns()
    }

    /// The vCPU.
    pub fn vcpu(&self) -> &Vcpu {
        &self.vcpu
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestRam {
        self.vm.memory()
    }

    /// The vCPU, for benchmarks that drive KVM_RUN themselves, and for a
    /// debugger.
    pub fn vcpu_mut(&mut self) -> &mut Vcpu {
        &mut self.vcpu
    }
}

/// How a run that ended with `result` is recorded.
pub fn end_reason(result: &Result<VmEnd, RunError>) -> EndReason {
    match result {
        Ok(VmEnd::Guest(GuestEnd::Exit(value))) => EndReason::GuestExit(*value),
        Ok(VmEnd::Guest(GuestEnd::Reset)) => EndReason::Reset,
        Ok(VmEnd::Guest(GuestEnd::Halted)) => EndReason::Halted,
        Ok(VmEnd::Guest(GuestEnd::Idle)) => EndReason::Idle,
        Ok(VmEnd::Guest(GuestEnd::TripleFault)) => EndReason::TripleFault,
        Ok(VmEnd::Stopped(reason)) => EndReason::Stopped(*reason),
        // Replays end as the recorded run did; their callers use its end.
        Ok(VmEnd::LogEnded) => EndReason::Failed("the log ends here".into()),
        Err(error) => EndReason::Failed(error.to_string()),
    }
}
