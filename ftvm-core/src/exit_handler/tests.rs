//! The exit handler on synthetic exits, with a scripted event source and a
//! sink that both write into one log of calls: what an exit counts, the
//! order of its steps (events, access, signature and digests, hand-back,
//! output), injection decisions, signatures and halts. Each order the
//! handler keeps is one a test would see broken.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use ft_logging::{
    DiskRequest, End, Event, EventSource, ExitDone, ExitQuery, MSR_TSC, OutputSink, SinkError,
    SourceError, StateDigest, StopReason,
};
use vm_memory::GuestAddress;

use super::{Access, CoreError, ExitHandler, Flow, Step, VmEnd};
use crate::devices::pic::LINUX_INIT;
use crate::devices::pit::Pit;
use crate::effect::GuestEnd;
use crate::memory::GuestRam;
use crate::platform::{Devices, Platform};

const IF: u64 = 1 << 9;
const COM1: u16 = 0x3f8;
const POST: u16 = 0x80;
/// A PIT period of 1193 ticks: about a millisecond.
const PERIOD: u16 = 1193;

/// What the core did, in order, as its source and its sink saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Events {
        exit: u64,
        halted: bool,
        deadline: Option<u64>,
    },
    Done {
        exit: u64,
        events: usize,
        signature: u64,
        console_bytes: u64,
        output: bool,
        complete: bool,
    },
    Console {
        exit: u64,
        bytes: Vec<u8>,
    },
    Flush,
}

type Log = Rc<RefCell<Vec<Call>>>;

/// Answers each query with the next scripted answer (no events once the
/// script is out), and logs every call.
struct Script {
    log: Log,
    answers: VecDeque<Result<Vec<Event>, SourceError>>,
}

impl EventSource for Script {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        self.log.borrow_mut().push(Call::Events {
            exit: query.exit,
            halted: query.halted,
            deadline: query.timer_deadline_ns,
        });
        events.extend(self.answers.pop_front().unwrap_or(Ok(Vec::new()))?);
        Ok(())
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        self.log.borrow_mut().push(Call::Done {
            exit: done.exit,
            events: done.events.len(),
            signature: done.signature.value(),
            console_bytes: done.console.bytes,
            output: done.output,
            complete: done.complete,
        });
        Ok(())
    }

    fn state(&mut self, _: u64, _: StateDigest) -> Result<(), SourceError> {
        Ok(())
    }

    fn end(&mut self, _: &End) -> Result<(), SourceError> {
        Ok(())
    }
}

struct Sink {
    log: Log,
}

impl OutputSink for Sink {
    fn console(&mut self, exit: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.log.borrow_mut().push(Call::Console {
            exit,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    fn disk(&mut self, _: u64, _: DiskRequest) -> Result<(), SinkError> {
        Ok(())
    }

    fn net(&mut self, _: u64, _: Vec<u8>) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.log.borrow_mut().push(Call::Flush);
        Ok(())
    }
}

/// The real handler and platform, fed exits by hand.
struct Core {
    handler: ExitHandler,
    source: Script,
    sink: Sink,
    log: Log,
    /// Where the next exit happens.
    rip: u64,
}

impl Core {
    /// Booted at virtual time zero.
    fn new() -> Self {
        let memory = GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let log = Log::default();
        let mut core = Self {
            handler: ExitHandler::new(Platform::new(Devices::default(), &memory)),
            source: Script {
                log: log.clone(),
                answers: VecDeque::new(),
            },
            sink: Sink { log: log.clone() },
            log,
            rip: 0x10_0000,
        };
        core.answer(vec![
            Event::WallClock {
                unix_ns: 1_700_000_000_000_000_000,
            },
            Event::Time { ns: 0 },
        ]);
        assert_eq!(core.handler.boot(&mut core.source).unwrap(), Flow::Continue);
        core.log.borrow_mut().clear();
        core
    }

    /// The events of the next query.
    fn answer(&mut self, events: Vec<Event>) {
        self.source.answers.push_back(Ok(events));
    }

    /// What the next query gets instead of events.
    fn refuse(&mut self, error: SourceError) {
        self.source.answers.push_back(Err(error));
    }

    fn exit(&mut self, access: Access<'_>, rflags: u64) -> Result<Flow, CoreError> {
        self.rip += 2;
        match self.handler.access(access, &mut self.source)? {
            Step::Completed(completed) => self.handler.finish(
                completed,
                self.rip,
                rflags,
                &mut self.source,
                &mut self.sink,
            ),
            Step::End(end) => Ok(Flow::End(end)),
        }
    }

    fn out(&mut self, port: u16, value: u8) -> Flow {
        self.exit(
            Access::PioOut {
                port,
                data: &[value],
            },
            IF,
        )
        .unwrap()
    }

    fn inp(&mut self, port: u16) -> u8 {
        let mut data = [0];
        let flow = self
            .exit(
                Access::PioIn {
                    port,
                    data: &mut data,
                },
                IF,
            )
            .unwrap();
        assert_eq!(flow, Flow::Continue);
        data[0]
    }

    fn hlt(&mut self, rflags: u64) -> Flow {
        self.exit(Access::Hlt, rflags).unwrap()
    }

    /// Writes to a port that needs time, at virtual time `ns`.
    fn out_at(&mut self, ns: u64, port: u16, value: u8) {
        self.answer(vec![Event::Time { ns }]);
        assert_eq!(self.out(port, value), Flow::Continue);
    }

    /// Initialises the PICs as Linux does: IRQ 0 at vector 0x20.
    fn init_pic(&mut self) {
        for (port, value) in LINUX_INIT {
            assert_eq!(self.out(port, value), Flow::Continue);
        }
    }

    /// Channel 0 in mode 2 with `PERIOD`, programmed at time `ns`.
    fn program_pit(&mut self, ns: u64) {
        self.out_at(ns, 0x43, 0x34);
        self.out_at(ns, 0x40, PERIOD as u8);
        self.out_at(ns, 0x40, (PERIOD >> 8) as u8);
    }

    fn take_log(&self) -> Vec<Call> {
        std::mem::take(&mut self.log.borrow_mut())
    }
}

#[test]
fn boot_is_exit_0_and_each_access_counts_once() {
    let mut core = Core::new();
    assert_eq!(core.handler.exits(), 0);
    core.out(POST, 1);
    core.out(POST, 2);
    assert_eq!(core.handler.exits(), 2);
    let queried: Vec<u64> = core
        .take_log()
        .iter()
        .filter_map(|call| match call {
            Call::Events { exit, .. } => Some(*exit),
            _ => None,
        })
        .collect();
    assert_eq!(queried, [1, 2], "exit k's query is for exit k");

    // A stop before an exit's events: the run ends there, as a value, and
    // that exit is not counted.
    core.refuse(SourceError::Stopped(StopReason::Terminated));
    assert_eq!(
        core.out(POST, 3),
        Flow::End(VmEnd::Stopped(StopReason::Terminated))
    );
    core.refuse(SourceError::LogEnded);
    assert_eq!(core.out(POST, 4), Flow::End(VmEnd::LogEnded));
    assert_eq!(core.handler.exits(), 2);
    // A failure of the source is an error.
    core.refuse(SourceError::Log("damaged".into()));
    assert!(matches!(
        core.exit(
            Access::PioOut {
                port: POST,
                data: &[5]
            },
            IF
        ),
        Err(CoreError::Source(SourceError::Log(_)))
    ));
}

#[test]
fn an_exit_takes_its_events_folds_and_hands_them_back_then_emits_its_output() {
    let mut core = Core::new();
    let before = core.handler.signature().value();
    core.answer(vec![Event::SerialIn(b"?".to_vec())]);
    assert_eq!(core.out(COM1, b'x'), Flow::Continue);
    let after = core.handler.signature().value();
    assert_ne!(before, after);
    assert_eq!(
        core.take_log(),
        [
            Call::Events {
                exit: 1,
                halted: false,
                deadline: None,
            },
            // Handed back with the exit folded into the signature and its
            // output into the console's digest, before the output leaves.
            Call::Done {
                exit: 1,
                events: 1,
                signature: after,
                console_bytes: 1,
                output: true,
                complete: true,
            },
            Call::Console {
                exit: 1,
                bytes: b"x".to_vec(),
            },
        ]
    );
    // An exit without output says so, and emits nothing.
    core.out(POST, 0);
    assert!(matches!(
        core.take_log()[..],
        [
            Call::Events { exit: 2, .. },
            Call::Done {
                exit: 2,
                events: 0,
                output: false,
                ..
            }
        ]
    ));
}

#[test]
fn the_events_of_an_exit_are_applied_before_its_access() {
    let mut core = Core::new();
    // A byte arriving at exit k is what exit k's read of the UART returns.
    core.answer(vec![Event::SerialIn(b"A".to_vec())]);
    assert_eq!(core.inp(COM1), b'A');

    // The time sample of exit k is the time exit k's PIT latch sees: the
    // same count as a bare PIT advanced to that time.
    core.program_pit(0);
    let mut pit = Pit::new();
    for (port, value) in [
        (0x43, 0x34),
        (0x40, PERIOD as u8),
        (0x40, (PERIOD >> 8) as u8),
    ] {
        pit.write(port, value);
    }
    let at = 500_000;
    pit.advance(at);
    pit.write(0x43, 0x00);
    let expected = [pit.read(0x40), pit.read(0x40)];
    core.out_at(at, 0x43, 0x00);
    core.answer(vec![Event::Time { ns: at }]);
    let low = core.inp(0x40);
    core.answer(vec![Event::Time { ns: at }]);
    let high = core.inp(0x40);
    assert_eq!([low, high], expected);
    assert_ne!(u16::from_le_bytes(expected), PERIOD, "the counter moved");
}

#[test]
fn an_access_that_reads_a_clock_needs_a_time_sample_in_its_events() {
    let mut core = Core::new();
    core.answer(vec![]);
    let result = core.exit(
        Access::PioIn {
            port: 0x40,
            data: &mut [0],
        },
        IF,
    );
    assert!(
        matches!(result, Err(CoreError::MissingTime { exit: 1 })),
        "{result:?}"
    );
}

#[test]
fn only_the_tsc_reads_a_logged_value_other_msrs_fault() {
    let mut core = Core::new();
    core.answer(vec![Event::MsrRead {
        index: MSR_TSC,
        value: 12_345,
    }]);
    let (mut value, mut fault) = (0, 0);
    let flow = core.exit(
        Access::RdMsr {
            index: MSR_TSC,
            value: &mut value,
            fault: &mut fault,
        },
        IF,
    );
    assert_eq!(flow.unwrap(), Flow::Continue);
    assert_eq!((value, fault), (12_345, 0));
    let flow = core.exit(
        Access::RdMsr {
            index: 0x10a,
            value: &mut value,
            fault: &mut fault,
        },
        IF,
    );
    assert_eq!(flow.unwrap(), Flow::Continue);
    assert_eq!(fault, 1, "#GP");
    let result = core.exit(
        Access::RdMsr {
            index: MSR_TSC,
            value: &mut value,
            fault: &mut 0,
        },
        IF,
    );
    assert!(matches!(
        result,
        Err(CoreError::MissingMsr {
            exit: 3,
            index: MSR_TSC
        })
    ));
}

#[test]
fn a_timer_edge_in_an_exits_events_decides_injection_at_that_exit() {
    let mut core = Core::new();
    core.init_pic();
    core.program_pit(0);
    assert!(!core.handler.interrupt_pending());
    // Past the first period: the edge comes with this exit's time sample,
    // and the interrupt is there to inject when the exit is finished.
    core.answer(vec![Event::Time { ns: 1_100_000 }]);
    core.out(POST, 0);
    assert!(core.handler.interrupt_pending());
    assert_eq!(core.handler.acknowledge_interrupt(), 0x20);
    assert!(!core.handler.interrupt_pending(), "in service until EOI");
    core.out(0x20, 0x20);
    // Masked, the next edge is not injected.
    core.out(0x21, 0x01);
    core.answer(vec![Event::Time { ns: 2_100_000 }]);
    core.out(POST, 0);
    assert!(!core.handler.interrupt_pending());
    core.out(0x21, 0x00);
    assert!(core.handler.interrupt_pending());
}

#[test]
fn a_halt_with_interrupts_off_ends_the_vm_at_once() {
    let mut core = Core::new();
    assert_eq!(core.hlt(0), Flow::End(VmEnd::Guest(GuestEnd::Halted)));
    assert!(matches!(
        core.take_log()[..],
        [
            Call::Events { halted: false, .. },
            Call::Done { .. },
            Call::Flush
        ]
    ));
}

#[test]
fn a_halt_waits_at_the_same_exit_until_an_interrupt_is_pending() {
    let mut core = Core::new();
    core.init_pic();
    core.program_pit(0);
    let exit = core.handler.exits() + 1;
    core.take_log();
    core.answer(vec![]);
    // Woken early, then by the timer.
    core.answer(vec![Event::Time { ns: 300_000 }]);
    core.answer(vec![Event::Time { ns: 1_100_000 }]);
    assert_eq!(core.hlt(IF), Flow::Continue);
    assert_eq!(core.handler.exits(), exit, "waiting counts no exit");
    assert!(core.handler.interrupt_pending());
    let log = core.take_log();
    let halted = |call: &Call| matches!(call, Call::Events { halted: true, .. });
    assert_eq!(log.iter().filter(|call| halted(call)).count(), 2, "{log:?}");
    // The guest's output is flushed before it waits; each batch of events
    // is handed back at the halted exit, and only the batch that leaves an
    // interrupt pending completes it.
    assert!(matches!(
        log[..],
        [
            Call::Events { halted: false, .. },
            Call::Done {
                events: 0,
                complete: false,
                ..
            },
            Call::Flush,
            Call::Events {
                halted: true,
                deadline: Some(_),
                ..
            },
            Call::Done {
                events: 1,
                complete: false,
                ..
            },
            Call::Events { halted: true, .. },
            Call::Done {
                events: 1,
                complete: true,
                ..
            },
        ]
    ));
    for call in &log {
        if let Call::Events { exit: k, .. } | Call::Done { exit: k, .. } = call {
            assert_eq!(*k, exit, "{log:?}");
        }
    }
}

#[test]
fn a_halt_with_an_interrupt_pending_neither_waits_nor_leaves_its_exit_open() {
    let mut core = Core::new();
    core.init_pic();
    core.program_pit(0);
    core.answer(vec![Event::Time { ns: 1_100_000 }]);
    core.out(POST, 0);
    assert!(core.handler.interrupt_pending());
    core.take_log();
    assert_eq!(core.hlt(IF), Flow::Continue);
    assert!(matches!(
        core.take_log()[..],
        [
            Call::Events { halted: false, .. },
            Call::Done { complete: true, .. },
            Call::Flush,
        ]
    ));
}

#[test]
fn a_halt_nothing_can_wake_or_a_stop_ends_the_vm_as_a_value() {
    let cases = [
        (Ok(vec![]), VmEnd::Guest(GuestEnd::Idle)),
        (Err(SourceError::Deadlock), VmEnd::Guest(GuestEnd::Idle)),
        (
            Err(SourceError::Stopped(StopReason::Interrupted)),
            VmEnd::Stopped(StopReason::Interrupted),
        ),
        (Err(SourceError::LogEnded), VmEnd::LogEnded),
    ];
    for (answer, end) in cases {
        let mut core = Core::new();
        core.answer(vec![]);
        core.source.answers.push_back(answer);
        assert_eq!(core.hlt(IF), Flow::End(end));
    }
}

#[test]
fn the_signature_folds_every_exits_kind_address_data_and_rip() {
    let run = |different: Option<usize>| {
        let mut core = Core::new();
        let mut signatures = Vec::new();
        for i in 0..4 {
            match different {
                Some(at) if at == i => core.out(POST, 0xee),
                _ => core.out(POST, i as u8),
            };
            signatures.push(core.handler.signature().value());
        }
        signatures
    };
    let same = run(None);
    assert_eq!(same, run(None), "the same exits fold the same");
    let other = run(Some(2));
    assert_eq!(other[..2], same[..2]);
    assert!(
        other[2..].iter().zip(&same[2..]).all(|(a, b)| a != b),
        "a different exit changes the signature from there on"
    );
    // The kind of access counts too: a read where a write was.
    let mut core = Core::new();
    core.answer(vec![Event::Time { ns: 0 }]);
    core.inp(POST);
    assert_ne!(core.handler.signature().value(), same[0]);
}

#[test]
fn the_guest_ends_the_vm_through_its_ports_after_its_output_is_flushed() {
    let mut core = Core::new();
    assert_eq!(
        core.out(0xf4, 7),
        Flow::End(VmEnd::Guest(GuestEnd::Exit(7)))
    );
    assert_eq!(core.take_log().last(), Some(&Call::Flush));
    assert_eq!(
        core.out(0x64, 0xfe),
        Flow::End(VmEnd::Guest(GuestEnd::Reset))
    );
    assert_eq!(
        core.exit(Access::Shutdown, IF).unwrap(),
        Flow::End(VmEnd::Guest(GuestEnd::TripleFault))
    );
}
