//! The replay as gdbstub's target: one x86-64 thread whose past can be
//! read and revisited but not changed.

use std::time::{Duration, Instant};

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps, outputln};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::X86_64_SSE;
use gdbstub_arch::x86::reg::{X86_64CoreRegs, X86SegmentRegs, X87FpuInternalRegs};
use tracing::warn;

use super::connection::GdbConnection;
use super::monitor::{self, Command};
use crate::timetravel::session::{Halt, Session};
use crate::timetravel::{GuestView, Position, ReplayEnd, ReplayError, ending_status};
use crate::vstate::Registers;

/// How often a running replay looks for gdb's Ctrl-C.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often a long `monitor goto` says where it is.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// errno values gdb shows for refused requests.
const EPERM: u8 = 1;
const EIO: u8 = 5;
const ENOSPC: u8 = 28;

/// What gdb asked the replay to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Continue,
    Step,
    ReverseContinue,
    ReverseStep,
}

#[derive(Debug)]
pub struct Debuggee {
    session: Session,
    action: Option<Action>,
}

impl Debuggee {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            action: None,
        }
    }

    pub fn into_session(self) -> Session {
        self.session
    }

    /// Does what gdb asked; `None` when gdb's Ctrl-C (or anything else it
    /// sent) interrupted a forward run.
    fn run(
        &mut self,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<SingleThreadStopReason<u64>, ReplayError> {
        let halt = match self.action {
            Some(Action::Continue) => self.session.resume(interrupted)?,
            Some(Action::Step) => self.session.step()?,
            Some(Action::ReverseContinue) => self.session.reverse_resume()?,
            Some(Action::ReverseStep) => self.session.reverse_step()?,
            None => Halt::Done,
        };
        Ok(match halt {
            Halt::Done => SingleThreadStopReason::DoneStep,
            Halt::Breakpoint => SingleThreadStopReason::HwBreak(()),
            Halt::Watch { address } => SingleThreadStopReason::Watch {
                tid: (),
                kind: WatchKind::Write,
                addr: address,
            },
            Halt::Interrupted => SingleThreadStopReason::Signal(Signal::SIGINT),
            Halt::Start => SingleThreadStopReason::ReplayLog {
                tid: None,
                pos: ReplayLogPosition::Begin,
            },
            Halt::Ended => match self.session.replayer().ending() {
                Some(ReplayEnd::Stopped(_)) => SingleThreadStopReason::Terminated(Signal::SIGTERM),
                Some(ending) => SingleThreadStopReason::Exited(ending_status(ending)),
                None => unreachable!("an ended replay has an ending"),
            },
        })
    }

    fn registers(&self) -> Result<Registers, TargetError<ReplayError>> {
        self.session
            .replayer()
            .registers()
            .map_err(TargetError::Fatal)
    }
}

impl Target for Debuggee {
    type Arch = X86_64_SSE;
    type Error = ReplayError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    // Z0 packets are answered with hardware breakpoints: gdb must never
    // write an int3, which our hosts cannot emulate.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl SingleThreadBase for Debuggee {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let Registers {
            regs: r,
            sregs,
            fpu,
        } = self.registers()?;
        regs.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        regs.segments = X86SegmentRegs {
            cs: sregs.cs.selector.into(),
            ss: sregs.ss.selector.into(),
            ds: sregs.ds.selector.into(),
            es: sregs.es.selector.into(),
            fs: sregs.fs.selector.into(),
            gs: sregs.gs.selector.into(),
        };
        for (st, fpr) in regs.st.iter_mut().zip(&fpu.fpr) {
            st.copy_from_slice(&fpr[..10]);
        }
        regs.fpu = X87FpuInternalRegs {
            fctrl: fpu.fcw.into(),
            fstat: fpu.fsw.into(),
            ftag: full_tag_word(fpu.ftwx),
            fiseg: 0,
            fioff: fpu.last_ip as u32,
            foseg: 0,
            fooff: fpu.last_dp as u32,
            fop: fpu.last_opcode.into(),
        };
        for (xmm, bytes) in regs.xmm.iter_mut().zip(&fpu.xmm) {
            *xmm = u128::from_le_bytes(*bytes);
        }
        regs.mxcsr = fpu.mxcsr;
        Ok(())
    }

    fn write_registers(&mut self, _regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        warn!("gdb tried to write registers: a replay cannot change the past");
        Err(TargetError::Errno(EPERM))
    }

    fn read_addrs(&mut self, start_addr: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let registers = self.registers()?;
        let replayer = self.session.replayer();
        GuestView::new(replayer.memory(), &registers.sregs)
            .read(start_addr, data)
            .map_err(|_| TargetError::Errno(EIO))
    }

    fn write_addrs(&mut self, start_addr: u64, _data: &[u8]) -> TargetResult<(), Self> {
        warn!(
            address = format_args!("{start_addr:#x}"),
            "gdb tried to write memory: a replay cannot change the past"
        );
        Err(TargetError::Errno(EPERM))
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

/// FXSAVE's abridged tag byte (1 = in use) as the x87 tag word gdb shows
/// (00 valid, 11 empty per register).
fn full_tag_word(abridged: u8) -> u32 {
    (0..8)
        .filter(|register| abridged & (1 << register) == 0)
        .map(|register| 0b11 << (2 * register))
        .sum()
}

impl SingleThreadResume for Debuggee {
    // Signals cannot be delivered into a replay: gdb's signal is ignored.
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.action = Some(Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, (), Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, (), Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Debuggee {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.action = Some(Action::Step);
        Ok(())
    }
}

impl ReverseStep<()> for Debuggee {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), Self::Error> {
        self.action = Some(Action::ReverseStep);
        Ok(())
    }
}

impl ReverseCont<()> for Debuggee {
    fn reverse_cont(&mut self) -> Result<(), Self::Error> {
        self.action = Some(Action::ReverseContinue);
        Ok(())
    }
}

impl Breakpoints for Debuggee {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl Debuggee {
    fn add_breakpoint(&mut self, address: u64) -> TargetResult<bool, Self> {
        match self.session.add_breakpoint(address) {
            Ok(()) => Ok(true),
            Err(error) => {
                warn!(address = format_args!("{address:#x}"), "{error}");
                Err(TargetError::Errno(ENOSPC))
            }
        }
    }
}

/// A software breakpoint (Z0) becomes a hardware one.
impl SwBreakpoint for Debuggee {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.add_breakpoint(addr)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.session.remove_breakpoint(addr))
    }
}

impl HwBreakpoint for Debuggee {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.add_breakpoint(addr)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.session.remove_breakpoint(addr))
    }
}

/// Write watchpoints only: this host's KVM fires no data breakpoints, so
/// writes are found through the dirty-page log (see
/// [`crate::timetravel::watch`]), and reads cannot be found at all.
impl HwWatchpoint for Debuggee {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        if kind != WatchKind::Write {
            warn!(
                "read watchpoints (rwatch, awatch) are not supported: this host's KVM never \
                 fires data breakpoints, and reads leave no trace; use watch"
            );
            return Ok(false);
        }
        match self.session.add_watch(addr, len) {
            Ok(()) => Ok(true),
            Err(error) => {
                warn!("{error}");
                Err(TargetError::Errno(EIO))
            }
        }
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        _kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.session.remove_watch(addr, len))
    }
}

impl MonitorCmd for Debuggee {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let text = String::from_utf8_lossy(cmd);
        match monitor::parse(&text) {
            Ok(Command::Help) => outputln!(out, "{}", monitor::HELP.trim_end()),
            Ok(Command::When) => {
                let position = self.session.position();
                outputln!(
                    out,
                    "{}",
                    monitor::describe_position(position, self.session.replayer())
                );
            }
            Ok(Command::Goto(exit)) => {
                let total = self.session.replayer().total_exits();
                if exit > total {
                    outputln!(out, "goto: the trace ends at exit {total}");
                } else {
                    // gdb gives up on a monitor command silent for its
                    // remote timeout (2 s): say where the replay is.
                    let mut last = Instant::now();
                    let mut progress = |at: u64| {
                        if last.elapsed() >= PROGRESS_INTERVAL {
                            last = Instant::now();
                            outputln!(out, "goto: at exit {at} of {exit}");
                            out.flush();
                        }
                    };
                    self.session
                        .goto_reporting(Position::at_exit(exit), &mut progress)?;
                    let position = self.session.position();
                    outputln!(
                        out,
                        "{}",
                        monitor::describe_position(position, self.session.replayer())
                    );
                }
            }
            Err(message) => outputln!(out, "{message}"),
        }
        Ok(())
    }
}

/// Runs the replay while watching the connection for gdb's Ctrl-C.
#[derive(Debug)]
pub enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = Debuggee;
    type Connection = GdbConnection;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut Debuggee,
        conn: &mut GdbConnection,
    ) -> Result<
        Event<SingleThreadStopReason<u64>>,
        WaitForStopReasonError<ReplayError, std::io::Error>,
    > {
        let mut last_poll = Instant::now();
        let mut incoming = None;
        let mut interrupted = || {
            if last_poll.elapsed() < POLL_INTERVAL {
                return false;
            }
            last_poll = Instant::now();
            match conn.peek() {
                Ok(None) => false,
                other => {
                    incoming = Some(other);
                    true
                }
            }
        };
        let stop = target
            .run(&mut interrupted)
            .map_err(WaitForStopReasonError::Target)?;
        match incoming {
            Some(_) => {
                // The run stopped at an exit for what gdb sent; the action
                // stays, in case it was not a Ctrl-C.
                let byte = conn.read().map_err(WaitForStopReasonError::Connection)?;
                Ok(Event::IncomingData(byte))
            }
            None => {
                target.action = None;
                Ok(Event::TargetStopped(stop))
            }
        }
    }

    fn on_interrupt(
        target: &mut Debuggee,
    ) -> Result<Option<SingleThreadStopReason<u64>>, ReplayError> {
        target.action = None;
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}
