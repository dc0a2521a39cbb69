//! The deterministic PC platform: the devices, the port bus that reaches
//! them, and the interrupt lines between them and the PIC.

use std::collections::BTreeSet;

use ft_logging::{DiskInfo, NetInfo};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::devices::i8042::{I8042, I8042State};
use crate::devices::pic::{DualPic, PicState};
use crate::devices::pit::{Pit, PitState};
use crate::devices::rtc::{Rtc, RtcState};
use crate::devices::uart::{Uart, UartState};
use crate::devices::virtio::{self, VirtioBus, VirtioBusState};
use crate::effect::{Effect, GuestEnd};
use crate::memory::GuestRam;
use crate::state::{InvalidState, check};

/// The version of the platform a guest sees: devices, their ports and
/// behaviour, the CPU model. A change a guest could observe bumps it, since
/// traces recorded on another platform do not replay.
pub const PLATFORM_VERSION: &str = "ftvm-pc-2";

const COM1_BASE: u16 = 0x3f8;
const COM1_IRQ: u8 = 4;
const PIT_IRQ: u8 = 0;
/// Writing byte v here ends the VM with exit status v.
pub const EXIT_PORT: u16 = 0xf4;
/// The POST-code port: writes are a common I/O delay, so they are accepted silently.
const POST_PORT: u16 = 0x80;
const RTC_DATA_PORT: u16 = 0x71;

/// The devices a guest has beyond the fixed PC ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Devices {
    /// The virtio block device, if any.
    pub disk: Option<DiskInfo>,
    /// The virtio network card, if any.
    pub net: Option<NetInfo>,
}

impl Devices {
    /// The command-line words that announce the virtio devices, in slot
    /// order.
    pub fn cmdline_words(&self) -> Vec<String> {
        (0..VirtioBus::slot_count(self.disk, self.net))
            .map(virtio::cmdline_word)
            .collect()
    }
}

/// The PC platform: every device, reached by ports and MMIO, wired to the PIC.
#[derive(Debug, Default)]
pub struct Platform {
    /// The 8259A pair.
    pub pic: DualPic,
    /// The 8254 timer.
    pub pit: Pit,
    /// The CMOS clock.
    pub rtc: Rtc,
    /// COM1.
    pub uart: Uart,
    i8042: I8042,
    virtio: VirtioBus,
    /// Unknown ports and addresses already warned about, so a guest probing
    /// in a loop does not flood the log.
    warned: BTreeSet<(&'static str, u64)>,
}

/// The state of every device of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformState {
    pic: PicState,
    pit: PitState,
    rtc: RtcState,
    uart: UartState,
    i8042: I8042State,
    virtio: VirtioBusState,
}

impl PlatformState {
    /// The virtual time of the last time sample applied, in nanoseconds
    /// since boot: a new primary's clock goes on from here.
    pub fn virtual_time_ns(&self) -> u64 {
        self.pit.now_ns()
    }

    /// The numbers of the disk requests in flight.
    pub fn disk_requests_in_flight(&self) -> Vec<u64> {
        self.virtio.disk_requests_in_flight()
    }
}

impl Platform {
    /// The PC platform with `devices`, whose queues live in `memory`.
    pub fn new(devices: Devices, memory: &GuestRam) -> Self {
        Self {
            virtio: VirtioBus::new(devices.disk, devices.net, memory),
            ..Self::default()
        }
    }

    /// Its state and every device's, for a snapshot.
    pub fn state(&self) -> PlatformState {
        PlatformState {
            pic: self.pic.state(),
            pit: self.pit.state(),
            rtc: self.rtc.state(),
            uart: self.uart.state(),
            i8042: self.i8042.state(),
            virtio: self.virtio.state(),
        }
    }

    /// The platform with `devices`, whose queues live in `memory`, in
    /// `state`; refused when a device's state is one it cannot reach, or
    /// the virtio devices are not those of `devices`.
    pub fn from_state(
        devices: Devices,
        memory: &GuestRam,
        state: &PlatformState,
    ) -> Result<Self, InvalidState> {
        let platform = Self {
            pic: DualPic::from_state(&state.pic)?,
            pit: Pit::from_state(&state.pit)?,
            rtc: Rtc::from_state(&state.rtc)?,
            uart: Uart::from_state(&state.uart)?,
            i8042: I8042::from_state(&state.i8042)?,
            virtio: VirtioBus::from_state(devices.disk, devices.net, memory, &state.virtio)?,
            warned: BTreeSet::new(),
        };
        // (The PIT's line follows its output from the first time sample on,
        // at boot: not before.)
        let wired = [(COM1_IRQ, platform.uart.irq())]
            .into_iter()
            .chain(platform.virtio.irq_levels())
            .all(|(irq, level)| platform.pic.line(irq) == level);
        check(
            wired,
            "platform",
            "an interrupt line that is not its device's output",
        )?;
        Ok(platform)
    }

    /// Whether an access to `port` reads or sets a clock, and so needs a
    /// fresh time sample first.
    pub fn port_needs_time(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | 0x61 | RTC_DATA_PORT)
    }

    /// Whether the guest can be interrupted by an event from outside now.
    pub fn interrupt_pending(&self) -> bool {
        self.pic.interrupt_pending()
    }

    /// Moves the clocks to `now_ns` and raises timer interrupts due by then.
    pub fn advance_time(&mut self, now_ns: u64) {
        if self.pit.advance(now_ns) > 0 {
            // Edges may have been missed between samples; they collapse into
            // one, as on hardware whose interrupt is held off.
            self.pic.set_irq(PIT_IRQ, false);
            self.pic.set_irq(PIT_IRQ, true);
        }
        self.pic.set_irq(PIT_IRQ, self.pit.out0());
        self.rtc.advance(now_ns);
    }

    /// Bytes from outside arriving on COM1's line.
    pub fn receive_serial(&mut self, bytes: &[u8]) {
        self.uart.receive(bytes);
        self.update_uart_irq();
    }

    /// A guest `in`: one byte per port, as 16- and 32-bit accesses to byte
    /// devices are split on ISA; a string access repeats the byte port.
    pub fn port_in(&mut self, port: u16, data: &mut [u8]) {
        let wide = data.len() <= 4;
        for (i, byte) in data.iter_mut().enumerate() {
            let port = if wide {
                port.wrapping_add(i as u16)
            } else {
                port
            };
            *byte = self.read_port(port);
        }
    }

    /// A guest `out`; effects go to `effects` in order.
    pub fn port_out(&mut self, port: u16, data: &[u8], effects: &mut Vec<Effect>) {
        let wide = data.len() <= 4;
        for (i, &byte) in data.iter().enumerate() {
            let port = if wide {
                port.wrapping_add(i as u16)
            } else {
                port
            };
            if let Some(effect) = self.write_port(port, byte) {
                let ends = matches!(effect, Effect::End(_));
                effects.push(effect);
                if ends {
                    return;
                }
            }
        }
    }

    /// A guest MMIO read: a virtio device's registers, or all ones.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        if !self.virtio.read(addr, data) {
            self.warn_once("MMIO read", addr);
            data.fill(0xff);
        }
    }

    /// A guest MMIO write; effects go to `effects` in order.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8], effects: &mut Vec<Effect>) {
        if self.virtio.write(addr, data, effects) {
            self.update_virtio_irqs();
        } else {
            self.warn_once("MMIO write", addr);
        }
    }

    /// The disk completed request `request`.
    pub fn complete_disk(&mut self, request: u64, status: u8, data: &[u8]) {
        self.virtio.complete_disk(request, status, data);
        self.update_virtio_irqs();
    }

    /// A frame arrived on the network.
    pub fn receive_frame(&mut self, frame: &[u8]) {
        self.virtio.receive_frame(frame);
        self.update_virtio_irqs();
    }

    /// Receive buffers the network card has for frames.
    pub fn net_rx_room(&self) -> usize {
        self.virtio.net_rx_room()
    }

    /// Whether the guest's devices wait for host I/O.
    pub fn io_pending(&self) -> bool {
        self.virtio.io_pending()
    }

    fn update_virtio_irqs(&mut self) {
        for (irq, level) in self.virtio.irq_levels() {
            self.pic.set_irq(irq, level);
        }
    }

    fn read_port(&mut self, port: u16) -> u8 {
        match port {
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.read(port),
            0x40..=0x43 | 0x61 => self.pit.read(port),
            0x60 | 0x64 => self.i8042.read(port),
            0x70 | 0x71 => self.rtc.read(port),
            COM1_BASE..=0x3ff => {
                let value = self.uart.read((port - COM1_BASE) as u8);
                self.update_uart_irq();
                value
            }
            _ => {
                self.warn_once("port read", u64::from(port));
                0xff
            }
        }
    }

    fn write_port(&mut self, port: u16, value: u8) -> Option<Effect> {
        match port {
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.write(port, value),
            0x40..=0x43 | 0x61 => {
                self.pit.write(port, value);
                self.pic.set_irq(PIT_IRQ, self.pit.out0());
            }
            0x60 | 0x64 => {
                if self.i8042.write(port, value) {
                    return Some(Effect::End(GuestEnd::Reset));
                }
            }
            0x70 | 0x71 => self.rtc.write(port, value),
            COM1_BASE..=0x3ff => {
                let sent = self.uart.write((port - COM1_BASE) as u8, value);
                self.update_uart_irq();
                return sent.map(Effect::Console);
            }
            EXIT_PORT => return Some(Effect::End(GuestEnd::Exit(value))),
            POST_PORT => {}
            _ => self.warn_once("port write", u64::from(port)),
        }
        None
    }

    fn update_uart_irq(&mut self) {
        self.pic.set_irq(COM1_IRQ, self.uart.irq());
    }

    fn warn_once(&mut self, what: &'static str, address: u64) {
        if self.warned.insert((what, address)) {
            warn!(
                address = format_args!("{address:#x}"),
                "guest {what} of an unknown address: ignored"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestAddress;

    use super::*;
    use crate::state::through_bytes;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn disk() -> Devices {
        Devices {
            disk: Some(DiskInfo {
                sectors: 8,
                read_only: false,
            }),
            net: None,
        }
    }

    #[test]
    fn a_platform_state_for_other_devices_is_refused() {
        let memory = ram();
        let state = through_bytes(&Platform::new(disk(), &memory).state());
        Platform::from_state(disk(), &memory, &state).unwrap();
        let error = Platform::from_state(Devices::default(), &memory, &state).unwrap_err();
        assert!(error.to_string().contains("other devices"), "{error}");
        // As many devices, of another kind.
        let net = Devices {
            disk: None,
            net: Some(NetInfo { mac: [2; 6] }),
        };
        let error = Platform::from_state(net, &memory, &state).unwrap_err();
        assert!(error.to_string().contains("other devices"), "{error}");
    }

    #[test]
    fn a_device_whose_interrupt_line_is_not_its_output_is_refused() {
        let memory = ram();
        let mut platform = Platform::new(Devices::default(), &memory);
        let quiet = platform.state();
        // The UART raises its line: enable its data interrupt, receive.
        let mut effects = Vec::new();
        platform.port_out(0x3f9, &[0x01], &mut effects);
        platform.port_out(0x3fc, &[0x02], &mut effects);
        platform.receive_serial(b"x");
        assert!(platform.pic.line(COM1_IRQ));
        let mut unwired = platform.state();
        unwired.pic = quiet.pic;
        let error = Platform::from_state(Devices::default(), &memory, &unwired).unwrap_err();
        assert!(error.to_string().contains("interrupt line"), "{error}");
        Platform::from_state(Devices::default(), &memory, &platform.state()).unwrap();
    }
}
