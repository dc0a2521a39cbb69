//! Encoding and decoding VM states: exact round trips of the core and its
//! devices mid-operation, memory pages full and partial, and refusal of
//! every damaged, other-version or other-platform state.

use std::path::Path;

use ft_logging::{
    CpuidLeaf, DiskInfo, End, Event, EventSource, ExitDone, ExitQuery, Header, NetInfo, NullSink,
    SourceError, StateDigest,
};
use ftvm_core::exit_handler::{Access, ExitHandler, Flow, Step};
use ftvm_core::memory::GuestRam;
use ftvm_core::platform::{Devices, PLATFORM_VERSION, Platform};
use sha2::{Digest, Sha256};
use vm_memory::{Bytes, GuestAddress};
use vm_state::envelope::{self, Kind};
use vm_state::{FtState, MachineState, PageSet, StateError, VcpuState, VmState, XSAVE_BYTES};

/// Time advances by a millisecond whenever the core asks for it.
struct Clock(u64);

impl EventSource for Clock {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        if query.exit == 0 {
            events.push(Event::WallClock {
                unix_ns: 1_700_000_000_000_000_000,
            });
        }
        if query.needs_time {
            self.0 += 1_000_000;
            events.push(Event::Time { ns: self.0 });
        }
        Ok(())
    }

    fn exit_done(&mut self, _: &ExitDone<'_>) -> Result<(), SourceError> {
        Ok(())
    }

    fn state(&mut self, _: u64, _: StateDigest) -> Result<(), SourceError> {
        Ok(())
    }

    fn end(&mut self, _: &End) -> Result<(), SourceError> {
        Ok(())
    }
}

const MIB: usize = 1 << 20;

fn devices() -> Devices {
    Devices {
        disk: Some(DiskInfo {
            sectors: 64,
            read_only: false,
        }),
        net: Some(NetInfo {
            mac: [0x52, 0x54, 0, 1, 2, 3],
        }),
    }
}

/// Port writes, then port reads: programs the PIT (a count latched but not
/// read out), the UART (FIFOs on, receive interrupt enabled), the PIC.
const WRITES: &[(u16, u8)] = &[
    (0x20, 0x11),
    (0x21, 0x20),
    (0x21, 0x04),
    (0x21, 0x01),
    (0x21, 0x00),
    (0x43, 0x34),
    (0x40, 0x9c),
    (0x40, 0x2e),
    (0x3fa, 0xc1),
    (0x3fc, 0x0b),
    (0x3f9, 0x01),
    (0x43, 0x00),
];
const READS: &[u16] = &[0x40, 0x40, 0x71, 0x3fa, 0x3fd, 0x20, 0x61];

/// Runs the accesses through the core as exits, and returns what the guest
/// read and the signature after each exit.
fn drive(
    handler: &mut ExitHandler,
    clock: &mut Clock,
    writes: &[(u16, u8)],
    reads: &[u16],
) -> Vec<u64> {
    let mut seen = Vec::new();
    let finish = |handler: &mut ExitHandler, clock: &mut Clock, step| {
        let Step::Completed(completed) = step else {
            panic!("the run ended at an access: {step:?}");
        };
        let flow = handler
            .finish(completed, 0x1000, 0x202, clock, &mut NullSink)
            .unwrap();
        assert_eq!(flow, Flow::Continue);
    };
    for &(port, value) in writes {
        let completed = handler
            .access(
                Access::PioOut {
                    port,
                    data: &[value],
                },
                clock,
            )
            .unwrap();
        finish(handler, clock, completed);
        seen.push(handler.signature().value());
    }
    for &port in reads {
        let mut data = [0u8];
        let completed = handler
            .access(
                Access::PioIn {
                    port,
                    data: &mut data,
                },
                clock,
            )
            .unwrap();
        finish(handler, clock, completed);
        seen.extend([u64::from(data[0]), handler.signature().value()]);
    }
    seen
}

fn ram() -> GuestRam {
    GuestRam::from_ranges(&[(GuestAddress(0), MIB)]).unwrap()
}

/// A whole VM state, the same on every call: a core mid-operation with a
/// disk and a network card, a few pages of data, a vCPU.
fn sample() -> (VmState, ExitHandler, GuestRam, Clock) {
    let memory = ram();
    memory
        .write_slice(b"a page of data", GuestAddress(0x10_000))
        .unwrap();
    memory
        .write_slice(&[0xee; 5000], GuestAddress(0x11_000))
        .unwrap();
    let mut handler = ExitHandler::new(Platform::new(devices(), &memory));
    let mut clock = Clock(0);
    handler.boot(&mut clock).unwrap();
    drive(&mut handler, &mut clock, WRITES, &[]);
    handler.acknowledge_interrupt();
    let kernel = b"not really an ELF".to_vec();
    let header = Header {
        platform: PLATFORM_VERSION.to_owned(),
        mem_mib: 1,
        cmdline: "ticks=3".into(),
        kernel_name: "sample".into(),
        kernel_sha256: Sha256::digest(&kernel).into(),
        kernel,
        cpuid: vec![CpuidLeaf {
            function: 1,
            eax: 0x806c1,
            ..CpuidLeaf::default()
        }],
        digest_interval: 0,
        disk: devices().disk,
        net: devices().net,
    };
    let vcpu = VcpuState {
        regs: kvm_bindings::kvm_regs {
            rip: 0x10_0000,
            rflags: 0x202,
            ..Default::default()
        },
        sregs: Default::default(),
        xsave: vec![0; XSAVE_BYTES],
        xcrs: Default::default(),
        debugregs: Default::default(),
        events: Default::default(),
        mp_state: Default::default(),
        msrs: vec![(0x10, 123_456), (0x277, 0x0007_0406_0007_0406)],
    };
    let state = VmState {
        header,
        machine: MachineState {
            vcpu,
            core: handler.state(),
            ft: FtState::default(),
        },
        memory: PageSet::capture_all(&memory),
    };
    (state, handler, memory, clock)
}

#[test]
fn a_whole_state_round_trips_and_the_core_goes_on_identically() {
    let (state, mut original, _, mut clock) = sample();
    let bytes = state.encode();
    let decoded = VmState::decode(&bytes).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(decoded.encode(), bytes, "one encoding");
    let memory = ram();
    decoded.memory.apply(&memory, None).unwrap();
    assert_eq!(PageSet::capture_all(&memory), state.memory);
    let mut restored = ExitHandler::from_state(devices(), &memory, &decoded.machine.core).unwrap();
    assert_eq!(restored.state(), state.machine.core);
    let mut restored_clock = Clock(clock.0);
    let expected = drive(&mut original, &mut clock, &[(0x3f8, b'!')], READS);
    let got = drive(&mut restored, &mut restored_clock, &[(0x3f8, b'!')], READS);
    assert_eq!(got, expected);
    assert_eq!(restored.state(), original.state());
    assert_eq!(restored.console(), original.console());
}

#[test]
fn zero_pages_travel_as_runs() {
    let (state, ..) = sample();
    assert_eq!(state.memory.len(), 256);
    assert_eq!(state.memory.data_pages(), 3);
    // The three pages, the XSAVE area and less than a page of the rest.
    let bytes = state.encode().len();
    assert!(bytes < 5 * 4096, "{bytes} bytes");
}

#[test]
fn a_subset_of_pages_brings_a_copy_up_to_date() {
    let memory = ram();
    memory
        .write_slice(&[1; 8192], GuestAddress(0x20_000))
        .unwrap();
    let copy = ram();
    PageSet::capture_all(&memory).apply(&copy, None).unwrap();
    // The source changes one page, zeroes another; the subset carries both.
    memory
        .write_slice(&[2; 10], GuestAddress(0x40_000))
        .unwrap();
    memory
        .write_slice(&[0; 4096], GuestAddress(0x21_000))
        .unwrap();
    let subset = PageSet::capture(&memory, [0x40, 0x21, 0x40]).unwrap();
    assert_eq!((subset.len(), subset.data_pages()), (2, 1));
    let subset = PageSet::decode(&subset.encode()).unwrap();
    subset.apply(&copy, None).unwrap();
    assert_eq!(PageSet::capture_all(&copy), PageSet::capture_all(&memory));
}

#[test]
fn pages_outside_ram_are_refused_and_nothing_is_written() {
    let small = ram();
    let big = GuestRam::from_ranges(&[(GuestAddress(0), 2 * MIB)]).unwrap();
    big.write_slice(&[3; 4096], GuestAddress(0x1000)).unwrap();
    big.write_slice(&[4; 4096], GuestAddress(0x1f_f000))
        .unwrap();
    let set = PageSet::capture_all(&big);
    let error = set.apply(&small, None).unwrap_err();
    assert!(error.to_string().contains("outside"), "{error}");
    assert_eq!(PageSet::capture_all(&small), PageSet::capture_all(&ram()));
    assert!(PageSet::capture(&small, [256]).is_err());
    // Zero pages too: a set of zeros reaching past RAM zeroes nothing.
    let written = ram();
    written
        .write_slice(&[5; 4096], GuestAddress(0x2000))
        .unwrap();
    let before = PageSet::capture_all(&written);
    let zeros =
        PageSet::capture_all(&GuestRam::from_ranges(&[(GuestAddress(0), 2 * MIB)]).unwrap());
    assert_eq!(zeros.data_pages(), 0);
    let error = zeros.apply(&written, None).unwrap_err();
    assert!(error.to_string().contains("outside"), "{error}");
    assert_eq!(PageSet::capture_all(&written), before);
}

#[test]
fn every_truncation_and_bit_flip_is_refused() {
    let (state, ..) = sample();
    let bytes = state.encode();
    for len in 0..bytes.len() {
        assert!(VmState::decode(&bytes[..len]).is_err(), "{len} bytes");
    }
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << (at % 8);
        let error = VmState::decode(&damaged).unwrap_err();
        assert!(!error.is_incompatible(), "byte {at}: {error}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        VmState::decode(&longer),
        Err(StateError::TrailingBytes(1))
    ));
}

#[test]
fn another_version_kind_or_platform_is_refused() {
    let (state, ..) = sample();
    let bytes = state.encode();
    let mut version = bytes.clone();
    version[8] = 2;
    assert!(matches!(
        VmState::decode(&version),
        Err(StateError::Version { found: 2, .. })
    ));
    let error = MachineState::decode(&bytes).unwrap_err();
    assert!(matches!(error, StateError::Kind { .. }), "{error}");
    let body = postcard::to_allocvec(&("ftvm-pc-0", &state)).unwrap();
    let error = VmState::decode(&envelope::seal(Kind::Vm, &body)).unwrap_err();
    assert!(error.is_incompatible(), "{error}");
    assert!(error.to_string().contains("ftvm-pc-0"), "{error}");
    let mut header = state.clone();
    header.header.platform = "ftvm-pc-0".into();
    assert!(
        VmState::decode(&header.encode())
            .unwrap_err()
            .is_incompatible()
    );
}

#[test]
fn a_well_formed_state_with_invalid_contents_is_refused() {
    let (state, ..) = sample();
    let mut kernel = state.clone();
    kernel.header.kernel.push(0);
    let mut xsave = state.clone();
    xsave.machine.vcpu.xsave.pop();
    let mut memory = state.clone();
    memory.header.mem_mib = 0;
    for (damaged, what) in [
        (kernel, "SHA-256"),
        (xsave, "XSAVE"),
        (memory, "MiB of RAM"),
    ] {
        let error = VmState::decode(&damaged.encode()).unwrap_err();
        assert!(error.to_string().contains(what), "{error}");
        assert!(!error.is_incompatible());
    }
    // Pages beyond the configuration's RAM.
    let mut small = state.clone();
    small.memory = PageSet::capture(&ram(), [0x100 - 1]).unwrap();
    VmState::decode(&small.encode()).unwrap();
    let big = GuestRam::from_ranges(&[(GuestAddress(0), 2 * MIB)]).unwrap();
    small.memory = PageSet::capture(&big, [0x100]).unwrap();
    let error = VmState::decode(&small.encode()).unwrap_err();
    assert!(error.to_string().contains("beyond"), "{error}");
}

#[test]
fn a_core_state_for_other_devices_is_refused() {
    let (state, ..) = sample();
    let error =
        ExitHandler::from_state(Devices::default(), &ram(), &state.machine.core).unwrap_err();
    assert!(error.to_string().contains("other devices"), "{error}");
}

/// The state decoder's fuzz target starts from a valid state, as received
/// (mode byte 0) and as an envelope's body (mode byte 1), which libFuzzer
/// could hardly find behind the checksum.
#[test]
fn the_fuzz_seeds_are_current() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/state_decoder");
    let (state, ..) = sample();
    let body = postcard::to_allocvec(&(PLATFORM_VERSION, &state)).unwrap();
    let expected = [
        ("envelope.bin", [&[0u8][..], &state.encode()].concat()),
        ("body.bin", [&[1u8][..], &body].concat()),
    ];
    for (name, bytes) in expected {
        let path = seeds.join(name);
        if std::env::var_os("FTVM_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&seeds).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let found = std::fs::read(&path).unwrap_or_default();
        assert!(
            found == bytes,
            "{} is stale: rewrite it with FTVM_WRITE_FUZZ_SEEDS=1 cargo test -p vm-state --test encoding",
            path.display()
        );
    }
}
