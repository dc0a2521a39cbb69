//! Any bytes as a VM state, as a standby receives one from the network:
//! the decoders refuse or decode them, never panic. What decodes is
//! restored as a standby would, without KVM (guest memory, the
//! deterministic core and every device, each checked by its
//! `from_state`), and the restored core runs a round of port and MMIO
//! accesses with disk completions and frames, which must not panic either.
//!
//! The first byte chooses the input: even, the rest is the bytes received;
//! odd, the rest is the body of a whole-VM envelope, so that the body's
//! decoder and the device checks are reached behind a valid checksum.
#![no_main]

use ft_logging::{
    End, Event, EventSource, ExitDone, ExitQuery, NullSink, SourceError, StateDigest,
};
use ftvm_core::devices::virtio::mmio_base;
use ftvm_core::exit_handler::{Access, ExitHandler, Flow, Step};
use ftvm_core::memory::GuestRam;
use ftvm_core::platform::Devices;
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_QUEUE_NOTIFY};
use vm_memory::GuestAddress;
use vm_state::envelope::{self, Kind};
use vm_state::{MachineState, PageSet, VmState};

/// Larger guests would only make runs slow.
const MAX_MEM_MIB: u32 = 16;
const PORTS: &[u16] = &[
    0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x60, 0x64, 0x70, 0x71,
    0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff,
];

/// Time moves on; the disk completes what is in flight; frames arrive.
struct Host {
    now_ns: u64,
    in_flight: Vec<u64>,
}

impl EventSource for Host {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        if query.halted {
            return Err(SourceError::Deadlock);
        }
        if query.needs_time {
            self.now_ns = self.now_ns.saturating_add(1_000_000);
            events.push(Event::Time { ns: self.now_ns });
        }
        if let Some(request) = self.in_flight.pop() {
            events.push(Event::DiskDone {
                request,
                status: 0,
                data: vec![0x5a; 512],
            });
        }
        if query.net_rx_room > 0 {
            events.push(Event::NetRx(vec![0xa5; 60]));
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

/// One exit; false once the guest ended the VM.
fn exit(core: &mut ExitHandler, host: &mut Host, access: Access<'_>) -> bool {
    let Ok(Step::Completed(completed)) = core.access(access, host) else {
        return false;
    };
    let flow = core.finish(completed, 0x1000, 0x202, host, &mut NullSink);
    if core.interrupt_pending() {
        core.acknowledge_interrupt();
    }
    matches!(flow, Ok(Flow::Continue))
}

/// Every port read, and writes of `values`; the virtio registers read, and
/// each queue notified.
fn exercise(core: &mut ExitHandler, host: &mut Host, values: &[u8]) {
    for &port in PORTS {
        if !exit(
            core,
            host,
            Access::PioIn {
                port,
                data: &mut [0],
            },
        ) {
            return;
        }
    }
    for (&port, &value) in PORTS.iter().zip(values.iter().cycle()) {
        if !exit(
            core,
            host,
            Access::PioOut {
                port,
                data: &[value],
            },
        ) {
            return;
        }
    }
    for slot in 0..2 {
        let base = mmio_base(slot);
        // Every transport register and the first words of the configuration.
        for offset in (0..u64::from(VIRTIO_MMIO_CONFIG) + 8).step_by(4) {
            if !exit(
                core,
                host,
                Access::MmioRead {
                    addr: base + offset,
                    data: &mut [0; 4],
                },
            ) {
                return;
            }
        }
        for queue in 0u32..2 {
            let notify = Access::MmioWrite {
                addr: base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY),
                data: &queue.to_le_bytes(),
            };
            if !exit(core, host, notify) {
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        envelope::seal(Kind::Vm, rest)
    };
    let _ = MachineState::decode(&bytes);
    let _ = PageSet::decode(&bytes);
    let Ok(state) = VmState::decode(&bytes) else {
        return;
    };
    if state.header.mem_mib > MAX_MEM_MIB {
        return;
    }
    let ram = (state.header.mem_mib as usize) << 20;
    let memory = GuestRam::from_ranges(&[(GuestAddress(0), ram)]).expect("guest memory");
    state
        .memory
        .apply(&memory, Some(&Default::default()))
        .expect("a decoded state's pages fit its RAM");
    let devices = Devices {
        disk: state.header.disk,
        net: state.header.net,
    };
    let core = &state.machine.core;
    let Ok(mut restored) = ExitHandler::from_state(devices, &memory, core) else {
        return;
    };
    let mut host = Host {
        now_ns: core.platform().virtual_time_ns(),
        in_flight: core.platform().disk_requests_in_flight(),
    };
    exercise(&mut restored, &mut host, rest);
});
