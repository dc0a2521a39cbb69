//! The whole VM state, captured from a real guest at an exit boundary and
//! restored into a second VM, which then goes on exactly as the first: the
//! same console bytes, exit signatures and state digests, the same end.
//! Traces recorded by the real binary supply the inputs; a replay paused
//! at exit N is captured, and a second machine replays the same trace from
//! exit N on (`Replay::from_state`), as a backup joining a primary does.

mod common;

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{run, scratch_dir};
use ft_logging::{DiskRequest, Event, Header, OutputSink, Record, SinkError};
use replay::{ReplaySource, TraceReader};
use vm_state::VmState;
use vmm::host::StopSignal;
use vmm::machine::{Cpu, Machine};
use vmm::replaying::{Replay, ReplayEnd};
use vmm::vm_config::VmConfig;
use vmm::vstate::Ran;

type Trace = TraceReader<BufReader<File>>;

/// The console bytes a replay writes.
#[derive(Debug, Default)]
struct Console(Vec<u8>);

impl OutputSink for Console {
    fn console(&mut self, _: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn disk(&mut self, _: u64, _: DiskRequest) -> Result<(), SinkError> {
        Ok(())
    }

    fn net(&mut self, _: u64, _: Vec<u8>) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn record(trace: &Path, guest: &[&str]) {
    let mut args = vec!["record", "--trace", trace.to_str().unwrap()];
    args.extend(["--digest-every", "25"]);
    args.extend_from_slice(guest);
    let out = run(&args);
    assert_eq!(out.code(), 0, "{out:#?}");
}

/// A trace of `diskcheck` writing, flushing and reading back its disk.
fn record_diskcheck(test: &str) -> PathBuf {
    let dir = scratch_dir(test);
    let image = dir.join("disk.img");
    fs::write(&image, vec![0u8; 64 * 512]).unwrap();
    let trace = dir.join("diskcheck.trace");
    let disk = image.to_str().unwrap();
    let cmdline = "mode=pattern seed=3 sectors=16";
    record(
        &trace,
        &[
            "--kernel",
            "diskcheck",
            "--disk",
            disk,
            "--cmdline",
            cmdline,
        ],
    );
    trace
}

fn open(trace: &Path) -> (Header, Trace) {
    let reader = TraceReader::open(trace).unwrap();
    (reader.header().clone(), reader)
}

/// A verifying replay of `trace` from its start.
fn replay_from_start(trace: &Path) -> (Header, Replay<Trace>) {
    let (header, reader) = open(trace);
    let config = VmConfig::from_header(&header).unwrap();
    let machine = Machine::new(&config, Cpu::Recorded(&header.cpuid)).unwrap();
    let source = ReplaySource::new(reader, true);
    let interval = header.digest_interval;
    (header, Replay::new(machine, source, interval))
}

/// Runs a replay to its end and checks the end against the trace's.
fn finish(mut replay: Replay<Trace>, console: &mut Console) -> ft_logging::End {
    let stop = Arc::new(StopSignal::default());
    let result = replay.run(console, &stop);
    match replay.finish(result).unwrap() {
        ReplayEnd::Ended { end, recorded } => {
            assert_eq!(end, recorded, "the replay ends as the recorded run");
            end
        }
        ReplayEnd::Stopped(reason) => panic!("stopped: {reason}"),
    }
}

fn pause(replay: &mut Replay<Trace>, console: &mut Console, exit: u64) -> u64 {
    let stop = Arc::new(StopSignal::default());
    assert_eq!(replay.run_until(console, &stop, exit).unwrap(), Ran::Paused);
    let paused = replay.machine().exits();
    assert!(paused >= exit, "paused at {paused}, before {exit}");
    paused
}

/// The XSAVE area as far as the guest can see it. With CR4.OSFXSR clear
/// (our guests never set it) SSE instructions fault, so the XMM registers
/// and MXCSR are invisible to the guest; on our nested hosts their saved
/// contents (and XSTATE_BV's SSE bit) vary from run to run (measured: XMM2
/// nonzero in one VM and in its init state in the other, the same guest
/// code at the same exit).
fn visible_xsave(state: &vm_state::VcpuState) -> Vec<u8> {
    const CR4_OSFXSR: u64 = 1 << 9;
    const MXCSR: std::ops::Range<usize> = 24..32;
    const XMM: std::ops::Range<usize> = 160..416;
    const XSTATE_BV: usize = 512;
    const XSTATE_SSE: u8 = 1 << 1;
    let mut xsave = state.xsave.clone();
    if state.sregs.cr4 & CR4_OSFXSR == 0 {
        xsave[MXCSR].fill(0);
        xsave[XMM].fill(0);
        xsave[XSTATE_BV] &= !XSTATE_SSE;
    }
    xsave
}

/// Asserts two states are the same but for the KVM TSC: the guest cannot
/// read it (it reads virtual time), and it follows the host's clock in each
/// VM. Says which part differs, without printing megabytes.
fn assert_same(got: &VmState, expected: &VmState, context: &str) {
    let (got_vcpu, expected_vcpu) = (&got.machine.vcpu, &expected.machine.vcpu);
    let msrs = |state: &vm_state::VcpuState| {
        let mut msrs = state.msrs.clone();
        msrs.retain(|&(index, _)| index != 0x10);
        msrs
    };
    let parts = [
        ("configuration", got.header == expected.header),
        ("registers", got_vcpu.regs == expected_vcpu.regs),
        ("system registers", got_vcpu.sregs == expected_vcpu.sregs),
        (
            "XSAVE area",
            visible_xsave(got_vcpu) == visible_xsave(expected_vcpu),
        ),
        ("XCRs", got_vcpu.xcrs == expected_vcpu.xcrs),
        (
            "debug registers",
            got_vcpu.debugregs == expected_vcpu.debugregs,
        ),
        ("pending events", got_vcpu.events == expected_vcpu.events),
        ("MP state", got_vcpu.mp_state == expected_vcpu.mp_state),
        ("MSRs", msrs(got_vcpu) == msrs(expected_vcpu)),
        (
            "core and devices",
            got.machine.core == expected.machine.core,
        ),
        ("FT bookkeeping", got.machine.ft == expected.machine.ft),
        ("memory", got.memory == expected.memory),
    ];
    for (part, same) in parts {
        assert!(
            same,
            "{context}: the {part} differ (rip {:#x} vs {:#x}, exit {} vs {})",
            got_vcpu.regs.rip,
            expected_vcpu.regs.rip,
            got.machine.exit(),
            expected.machine.exit()
        );
    }
}

/// Captures the first replay at `exit`, restores the state (through its
/// encoding) into a second VM that replays the trace from there, and
/// checks that both go on identically to the end of the trace. Returns
/// the captured state.
fn check_exact_continuation(trace: &Path, exit: u64) -> VmState {
    let (_, full) = replay_from_start(trace);
    let mut whole = Console::default();
    let whole_end = {
        let mut console = Console::default();
        let end = finish(full, &mut console);
        whole.0 = console.0;
        end
    };

    let (header, mut first) = replay_from_start(trace);
    let mut before = Console::default();
    let paused = pause(&mut first, &mut before, exit);
    let state = first.machine().capture_vm(header.clone()).unwrap();
    assert_eq!(state.machine.exit(), paused);
    // Every MSR ftvm gives an initial value is in the state (with the
    // others KVM saves).
    let msrs: Vec<u32> = state.machine.vcpu.msrs.iter().map(|&(i, _)| i).collect();
    for index in [
        0x10,
        0x174,
        0x175,
        0x176,
        0x1a0,
        0x277,
        0xc000_0081,
        0xc000_0102,
    ] {
        assert!(msrs.contains(&index), "MSR {index:#x} in {msrs:x?}");
    }
    let bytes = state.encode();
    let decoded = VmState::decode(&bytes).unwrap();
    assert!(decoded == state, "the state survives its encoding");

    let (_, reader) = open(trace);
    let mut second = Replay::from_state(&decoded, reader, true).unwrap();
    assert_eq!(second.machine().exits(), paused);
    // The second VM holds exactly the captured state.
    let restored = second.machine().capture_vm(header.clone()).unwrap();
    assert_same(&restored, &state, "restored");
    assert_eq!(
        second.machine().state_digest().unwrap(),
        first.machine().state_digest().unwrap()
    );

    // Both go on to a later exit: the same state there, whole.
    let later = paused + (whole_end.exit - paused) / 2;
    let mut first_after = Console::default();
    let mut second_after = Console::default();
    let at = pause(&mut first, &mut first_after, later);
    assert_eq!(pause(&mut second, &mut second_after, later), at);
    assert_eq!(first_after.0, second_after.0);
    let first_state = first.machine().capture_vm(header.clone()).unwrap();
    let second_state = second.machine().capture_vm(header).unwrap();
    assert_same(&second_state, &first_state, "both at a later exit");

    // And to the end, each verifying every digest and the end record.
    let first_end = finish(first, &mut first_after);
    let second_end = finish(second, &mut second_after);
    assert_eq!(first_end, whole_end);
    assert_eq!(second_end, whole_end);
    assert_eq!(first_after.0, second_after.0);
    assert_eq!([before.0, first_after.0].concat(), whole.0, "console bytes");
    state
}

#[test]
fn a_ticker_captured_mid_run_goes_on_identically_in_a_second_vm() {
    let dir = scratch_dir("state-ticker");
    let trace = dir.join("ticker.trace");
    record(
        &trace,
        &["--kernel", "ticker", "--cmdline", "ticks=6 hz=40"],
    );
    let exits = replay::inspect(&trace).unwrap().end.exit;
    // An exit after which KVM holds an interrupt injected but not yet
    // delivered, which only a whole vCPU state carries.
    let (_, mut scan) = replay_from_start(&trace);
    let mut console = Console::default();
    let mut exit = 0;
    let injected = loop {
        exit = pause(&mut scan, &mut console, exit + 1);
        let state = scan.machine().capture().unwrap();
        if state.vcpu.events.interrupt.injected != 0 {
            break exit;
        }
    };
    for exit in [0, injected, exits / 3, 2 * exits / 3] {
        let state = check_exact_continuation(&trace, exit);
        assert!(state.memory.data_pages() > 0);
    }
}

/// Every kind of exit boundary in a tick of `ticker` (port reads KVM
/// completes on the next entry, writes, halts, injections) is a place to
/// capture: a VM restored there reaches the same state three exits on as
/// the VM it was captured from.
#[test]
fn every_exit_of_a_tick_is_a_place_to_capture_and_restore() {
    let dir = scratch_dir("state-every-exit");
    let trace = dir.join("ticker.trace");
    record(
        &trace,
        &[
            "--kernel",
            "ticker",
            "--mem-mib",
            "8",
            "--cmdline",
            "ticks=3 hz=40",
        ],
    );
    let (header, mut first) = replay_from_start(&trace);
    let mut console = Console::default();
    let mut states = Vec::new();
    let mut exit = 80;
    while exit <= 200 {
        exit = pause(&mut first, &mut console, exit) + 1;
        states.push(first.machine().capture_vm(header.clone()).unwrap());
    }
    let injections = states
        .iter()
        .filter(|state| state.machine.vcpu.events.interrupt.injected != 0)
        .count();
    assert!(injections > 0, "the window holds a tick");
    for state in &states {
        let (_, reader) = open(&trace);
        let mut second = Replay::from_state(state, reader, true).unwrap();
        let at = pause(
            &mut second,
            &mut Console::default(),
            state.machine.exit() + 3,
        );
        let Some(expected) = states.iter().find(|s| s.machine.exit() == at) else {
            break;
        };
        let got = second.machine().capture_vm(header.clone()).unwrap();
        let context = format!("restored after exit {}", state.machine.exit());
        assert_same(&got, expected, &context);
    }
}

#[test]
fn a_disk_request_in_flight_completes_in_the_second_vm() {
    let trace = record_diskcheck("state-disk");
    // The exit just before the first read completes: the request is in
    // flight there.
    let (_, mut reader) = open(&trace);
    let completion = std::iter::from_fn(|| reader.next_record().unwrap())
        .find_map(|record| match record {
            Record::Event {
                exit,
                event: Event::DiskDone { data, .. },
                ..
            } if !data.is_empty() => Some(exit),
            _ => None,
        })
        .expect("the guest reads its disk");
    let state = check_exact_continuation(&trace, completion - 1);
    assert_eq!(state.machine.exit(), completion - 1);
    assert!(
        !state
            .machine
            .core
            .platform()
            .disk_requests_in_flight()
            .is_empty()
    );
}

/// A pre-copy or an incremental checkpoint in small: the whole state at
/// exit N, then only the pages dirtied from N to M (by the guest, in KVM's
/// log, and by the VMM: disk data, used rings) and the machine state at
/// M, bring a copy made at N to exactly the state at M.
fn check_dirty_pages_bring_a_copy_forward(trace: &Path, from: u64, to: u64) {
    let (header, mut first) = replay_from_start(trace);
    let mut console = Console::default();
    let start = pause(&mut first, &mut console, from);
    let tracker = first.machine().memory_tracker();
    tracker.start().unwrap();
    let at_start = first.machine().capture_vm(header.clone()).unwrap();
    let end = pause(&mut first, &mut console, to);
    let dirty = tracker.dirty_pages().unwrap();
    tracker.stop().unwrap();
    let pages = vm_state::PageSet::decode(&tracker.capture(&dirty).unwrap().encode()).unwrap();
    let machine =
        vm_state::MachineState::decode(&first.machine().capture().unwrap().encode()).unwrap();
    assert!(
        !dirty.is_empty() && dirty.count() < at_start.memory.len() / 4,
        "{} of {} pages dirty from exit {start} to {end}",
        dirty.count(),
        at_start.memory.len()
    );

    let mut copy = Machine::restore(&at_start).unwrap();
    copy.apply_pages(&pages).unwrap();
    copy.apply_state(&machine).unwrap();
    let expected = first.machine().capture_vm(header.clone()).unwrap();
    assert_same(
        &copy.capture_vm(header).unwrap(),
        &expected,
        "brought forward",
    );
    // The copy replays on from there to the recorded end.
    let (_, reader) = open(trace);
    let source = ReplaySource::resume_after(reader, true, copy.exits());
    let interval = expected.header.digest_interval;
    finish(Replay::new(copy, source, interval), &mut Console::default());
}

#[test]
fn pages_the_guest_dirtied_bring_a_copy_to_a_later_state() {
    let dir = scratch_dir("state-dirty-ticker");
    let trace = dir.join("ticker.trace");
    record(
        &trace,
        &["--kernel", "ticker", "--cmdline", "ticks=4 hz=40"],
    );
    check_dirty_pages_bring_a_copy_forward(&trace, 100, 250);
}

#[test]
fn pages_the_vmm_wrote_for_the_disk_bring_a_copy_to_a_later_state() {
    let trace = record_diskcheck("state-dirty-disk");
    let exits = replay::inspect(&trace).unwrap().end.exit;
    check_dirty_pages_bring_a_copy_forward(&trace, exits / 4, 3 * exits / 4);
}
