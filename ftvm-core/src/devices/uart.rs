//! National Semiconductor 16550A UART, following its datasheet: a
//! priority-encoded IIR, 16-byte FIFOs with trigger levels, and a level
//! INTR output. COM1 on a PC; the core passes register offsets 0–7.
//!
//! Choices of this model:
//! - Transmission is instantaneous: a THR write hands the byte out at once,
//!   so THR and the transmitter are always empty (THRE and TEMT set) and the
//!   TX FIFO never holds anything.
//! - Bytes from outside arrive in bursts at VM exits and the line is idle
//!   between them, so the character timeout indication holds whenever the
//!   FIFOs are on and the RX FIFO is non-empty but below the trigger level.
//! - The line delivers bytes without parity or framing errors or breaks, so
//!   of the LSR error bits only OE (overrun) is ever set, and LSR bit 7
//!   stays clear.
//! - Outside loopback the modem lines are those of a connected peer: CTS,
//!   DSR and DCD asserted, RI not.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::state::{InvalidState, check};

const RBR_THR_DLL: u8 = 0;
const IER_DLM: u8 = 1;
const IIR_FCR: u8 = 2;
const LCR: u8 = 3;
const MCR: u8 = 4;
const LSR: u8 = 5;
const MSR: u8 = 6;
const SCR: u8 = 7;

const IER_RX_DATA: u8 = 0x01;
const IER_THR_EMPTY: u8 = 0x02;
const IER_RX_LINE_STATUS: u8 = 0x04;
const IER_MODEM_STATUS: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

const IIR_NONE: u8 = 0x01;
const IIR_MODEM_STATUS: u8 = 0x00;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RX_DATA: u8 = 0x04;
const IIR_RX_LINE_STATUS: u8 = 0x06;
const IIR_CHAR_TIMEOUT: u8 = 0x0c;
const IIR_FIFOS_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

const MCR_RTS: u8 = 0x02;
const MCR_LOOPBACK: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

const LSR_DATA_READY: u8 = 0x01;
const LSR_OVERRUN: u8 = 0x02;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TX_EMPTY: u8 = 0x40;

/// MSR bits 7:4 of a connected peer: DCD, DSR, CTS.
const MSR_CONNECTED: u8 = 0xb0;
const MSR_RI: u8 = 0x40;
const MSR_TRAILING_EDGE_RI: u8 = 0x04;

// Guest misuses logged once per UART (bits of `Uart::warned`).
const WARN_OFFSET: u8 = 1 << 0;
const WARN_READ_ONLY: u8 = 1 << 1;

/// The 16550A.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uart {
    /// RX FIFO, or the receive holding register (one byte) with FIFOs off.
    rx: VecDeque<u8>,
    fifo_enabled: bool,
    /// RX FIFO trigger level: 1, 4, 8 or 14 bytes.
    rx_trigger: usize,
    dll: u8,
    dlm: u8,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    /// LSR.OE, until LSR is read.
    overrun: bool,
    /// The THRE interrupt, until IIR reports it or THR is written.
    thr_empty_pending: bool,
    /// MSR bits 3:0 (DCTS, DDSR, TERI, DDCD), until MSR is read.
    modem_deltas: u8,
    warned: u8,
}

/// The state of the 16550A: its receive FIFO (or holding register), FIFO
/// mode and trigger level, every register, and the interrupt conditions
/// waiting to be read (overrun, THR empty, modem status deltas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UartState {
    #[serde(with = "serde_bytes")]
    rx: Vec<u8>,
    fifo_enabled: bool,
    rx_trigger: u8,
    dll: u8,
    dlm: u8,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    overrun: bool,
    thr_empty_pending: bool,
    modem_deltas: u8,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// Bytes in each FIFO.
    pub const FIFO_SIZE: usize = 16;

    /// The state after a master reset: FIFOs off, interrupts disabled.
    pub fn new() -> Self {
        Uart {
            rx: VecDeque::with_capacity(Self::FIFO_SIZE),
            fifo_enabled: false,
            rx_trigger: 1,
            dll: 0,
            dlm: 0,
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            overrun: false,
            thr_empty_pending: false,
            modem_deltas: 0,
            warned: 0,
        }
    }

    /// Its state, for a snapshot.
    pub fn state(&self) -> UartState {
        UartState {
            rx: self.rx.iter().copied().collect(),
            fifo_enabled: self.fifo_enabled,
            rx_trigger: self.rx_trigger as u8,
            dll: self.dll,
            dlm: self.dlm,
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            scr: self.scr,
            overrun: self.overrun,
            thr_empty_pending: self.thr_empty_pending,
            modem_deltas: self.modem_deltas,
        }
    }

    /// The UART in `state`, refused when no guest could have reached it.
    pub fn from_state(state: &UartState) -> Result<Self, InvalidState> {
        let uart = Uart {
            rx: state.rx.iter().copied().collect(),
            fifo_enabled: state.fifo_enabled,
            rx_trigger: usize::from(state.rx_trigger),
            dll: state.dll,
            dlm: state.dlm,
            ier: state.ier,
            lcr: state.lcr,
            mcr: state.mcr,
            scr: state.scr,
            overrun: state.overrun,
            thr_empty_pending: state.thr_empty_pending,
            modem_deltas: state.modem_deltas,
            warned: 0,
        };
        check(
            uart.rx.len() <= uart.rx_capacity(),
            "16550A",
            "more received bytes than its FIFO holds",
        )?;
        check(
            matches!(uart.rx_trigger, 1 | 4 | 8 | 14),
            "16550A",
            "a trigger level no FCR sets",
        )?;
        check(
            uart.ier & !IER_MASK == 0 && uart.mcr & !MCR_MASK == 0 && uart.modem_deltas <= 0x0f,
            "16550A",
            "register bits the chip does not have",
        )?;
        Ok(uart)
    }

    fn warn_once(&mut self, bit: u8) -> bool {
        let first = self.warned & bit == 0;
        self.warned |= bit;
        first
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOPBACK != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled {
            Self::FIFO_SIZE
        } else {
            1
        }
    }

    /// MSR bits 7:4 (DCD, RI, DSR, CTS).
    fn modem_lines(&self) -> u8 {
        if !self.loopback() {
            return MSR_CONNECTED;
        }
        // Loopback: DTR drives DSR, RTS CTS, OUT1 RI and OUT2 DCD.
        let mcr = self.mcr;
        ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)
    }

    fn lsr(&self) -> u8 {
        let mut lsr = LSR_THR_EMPTY | LSR_TX_EMPTY;
        if !self.rx.is_empty() {
            lsr |= LSR_DATA_READY;
        }
        if self.overrun {
            lsr |= LSR_OVERRUN;
        }
        lsr
    }

    /// IIR: the highest-priority pending interrupt.
    fn iir(&self) -> u8 {
        let enabled = |bit: u8| self.ier & bit != 0;
        let trigger = if self.fifo_enabled {
            self.rx_trigger
        } else {
            1
        };
        let id = if enabled(IER_RX_LINE_STATUS) && self.overrun {
            IIR_RX_LINE_STATUS
        } else if enabled(IER_RX_DATA) && self.rx.len() >= trigger {
            IIR_RX_DATA
        } else if enabled(IER_RX_DATA) && !self.rx.is_empty() {
            // Below the trigger level, which only FIFO mode has.
            IIR_CHAR_TIMEOUT
        } else if enabled(IER_THR_EMPTY) && self.thr_empty_pending {
            IIR_THR_EMPTY
        } else if enabled(IER_MODEM_STATUS) && self.modem_deltas != 0 {
            IIR_MODEM_STATUS
        } else {
            IIR_NONE
        };
        if self.fifo_enabled {
            id | IIR_FIFOS_ENABLED
        } else {
            id
        }
    }

    /// A character completes in the receiver shift register.
    fn receive_byte(&mut self, byte: u8) {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(byte);
            return;
        }
        self.overrun = true;
        // Without FIFOs the new character overwrites the holding register;
        // with them the FIFO is kept and the new character is lost.
        if !self.fifo_enabled {
            self.rx[0] = byte;
        }
    }

    /// Guest read of the register at `offset` (0–7) from the base port.
    pub fn read(&mut self, offset: u8) -> u8 {
        match offset {
            RBR_THR_DLL if self.dlab() => self.dll,
            RBR_THR_DLL => self.rx.pop_front().unwrap_or(0),
            IER_DLM if self.dlab() => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => {
                let iir = self.iir();
                if iir & 0x0f == IIR_THR_EMPTY {
                    self.thr_empty_pending = false;
                }
                iir
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.overrun = false;
                lsr
            }
            MSR => {
                let msr = self.modem_lines() | self.modem_deltas;
                self.modem_deltas = 0;
                msr
            }
            SCR => self.scr,
            _ => {
                if self.warn_once(WARN_OFFSET) {
                    warn!(offset, "16550A: read of an unknown register");
                }
                0xff
            }
        }
    }

    /// Guest write; returns the byte transmitted to the outside world, if
    /// any (None in loopback mode, or for non-THR registers).
    pub fn write(&mut self, offset: u8, value: u8) -> Option<u8> {
        match offset {
            RBR_THR_DLL if self.dlab() => self.dll = value,
            RBR_THR_DLL => {
                // The byte leaves at once, so THR is empty again.
                self.thr_empty_pending = true;
                if !self.loopback() {
                    return Some(value);
                }
                self.receive_byte(value);
            }
            IER_DLM if self.dlab() => self.dlm = value,
            IER_DLM => {
                let ier = value & IER_MASK;
                // Enabling the THRE interrupt while THR is empty raises it.
                if ier & IER_THR_EMPTY != 0 && self.ier & IER_THR_EMPTY == 0 {
                    self.thr_empty_pending = true;
                }
                self.ier = ier;
            }
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => {
                let before = self.modem_lines();
                self.mcr = value & MCR_MASK;
                let after = self.modem_lines();
                // DCTS, DDSR, DDCD on any change; TERI when RI falls.
                let changed = (before ^ after) & !MSR_RI;
                let ri_fell = before & !after & MSR_RI != 0;
                self.modem_deltas |= changed >> 4;
                if ri_fell {
                    self.modem_deltas |= MSR_TRAILING_EDGE_RI;
                }
            }
            LSR | MSR => {
                if self.warn_once(WARN_READ_ONLY) {
                    warn!(offset, value, "16550A: write to a read-only register");
                }
            }
            SCR => self.scr = value,
            _ => {
                if self.warn_once(WARN_OFFSET) {
                    warn!(offset, value, "16550A: write to an unknown register");
                }
            }
        }
        None
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_ENABLE != 0;
        if enable != self.fifo_enabled {
            // Switching FIFO mode clears both FIFOs (TX is always empty).
            self.rx.clear();
            self.fifo_enabled = enable;
        }
        // The other bits are only written together with the enable bit.
        if !enable {
            return;
        }
        if value & FCR_CLEAR_RX != 0 {
            self.rx.clear();
        }
        // Bit 2 clears the TX FIFO, which is always empty here.
        self.rx_trigger = match value >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        };
    }

    /// Free room in the receive FIFO for bytes from outside (1 for the
    /// holding register when FIFOs are off). The line to the outside uses
    /// RTS/CTS flow control: it sends only while the guest asserts RTS, so
    /// bytes typed before the guest set up its UART wait instead of landing
    /// in a FIFO the guest's initialisation then clears. Zero in loopback
    /// mode, where the line is disconnected from outside.
    pub fn rx_room(&self) -> usize {
        if self.loopback() || self.mcr & MCR_RTS == 0 {
            0
        } else {
            self.rx_capacity() - self.rx.len()
        }
    }

    /// Bytes from outside arriving on the line. Callers never pass more
    /// than rx_room(); if they do, the datasheet's overrun (LSR.OE)
    /// applies. In loopback mode the receiver does not see the line, so
    /// the bytes are lost.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.loopback() {
            return;
        }
        for &byte in bytes {
            self.receive_byte(byte);
        }
    }

    /// Level of the INTR output (a level line; the core feeds it to PIC
    /// IRQ 4). Not gated by MCR.OUT2: that is PC board wiring, not the
    /// UART.
    pub fn irq(&self) -> bool {
        self.iir() & IIR_NONE == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iir(uart: &mut Uart) -> u8 {
        uart.read(2)
    }

    #[test]
    fn reset_state() {
        let mut uart = Uart::new();
        assert_eq!(iir(&mut uart), 0x01);
        assert_eq!(uart.read(5), 0x60);
        assert_eq!(uart.read(6), 0xb0);
        assert!(!uart.irq());
        assert_eq!(uart.rx_room(), 0, "RTS is off until the guest sets it");
        uart.write(4, 0x02);
        assert_eq!(uart.rx_room(), 1);
    }

    #[test]
    fn the_line_sends_only_while_the_guest_asserts_rts() {
        let mut uart = Uart::new();
        uart.write(2, 0x01);
        assert_eq!(uart.rx_room(), 0);
        uart.write(4, 0x0b); // DTR, RTS, OUT2: ready to receive
        assert_eq!(uart.rx_room(), 16);
        uart.receive(b"abc");
        uart.write(4, 0x09); // RTS dropped: hold off, keep what arrived
        assert_eq!(uart.rx_room(), 0);
        assert_eq!(uart.read(0), b'a');
    }

    #[test]
    fn iir_priority_and_clearing() {
        let mut uart = Uart::new();
        // Raise every source with interrupts disabled.
        uart.receive(&[1, 2]); // FIFOs off: the second overruns
        uart.write(4, 0x10); // enter and leave loopback: modem deltas
        uart.write(4, 0x00);
        assert_eq!(uart.write(0, b'x'), Some(b'x'));
        assert!(!uart.irq(), "IER is 0");
        uart.write(1, 0x0f);
        assert!(uart.irq());
        // Receiver line status first, cleared by reading LSR.
        assert_eq!(iir(&mut uart), 0x06);
        assert_eq!(iir(&mut uart), 0x06, "reading IIR does not clear it");
        assert_eq!(uart.read(5), 0x63);
        // Then received data, cleared by reading RBR.
        assert_eq!(iir(&mut uart), 0x04);
        assert_eq!(uart.read(0), 2, "the overrun replaced the first byte");
        // Then THR empty, cleared by reading IIR while it is reported.
        assert_eq!(iir(&mut uart), 0x02);
        // Then modem status, cleared by reading MSR.
        assert_eq!(iir(&mut uart), 0x00);
        assert_eq!(uart.read(6), 0xb0 | 0x0b);
        assert_eq!(iir(&mut uart), 0x01);
        assert!(!uart.irq());
    }

    #[test]
    fn thre_interrupt_on_enable_and_after_each_write() {
        let mut uart = Uart::new();
        uart.write(1, 0x02);
        assert!(uart.irq(), "enabling ETBEI with THR empty interrupts");
        assert_eq!(iir(&mut uart), 0x02);
        assert!(!uart.irq());
        assert_eq!(uart.write(0, b'a'), Some(b'a'));
        assert!(uart.irq(), "THR emptied again");
        // Writing THR clears a pending THRE that re-arms at once; so does
        // re-enabling ETBEI.
        uart.write(1, 0x00);
        assert!(!uart.irq());
        uart.write(1, 0x02);
        assert_eq!(iir(&mut uart), 0x02);
        uart.write(1, 0x02);
        assert!(!uart.irq(), "no 0-to-1 transition");
        // A higher-priority source hides THRE, and reading IIR then
        // leaves it pending.
        uart.write(0, b'b');
        uart.write(1, 0x03);
        uart.receive(b"z");
        assert_eq!(iir(&mut uart), 0x04);
        uart.read(0);
        assert_eq!(iir(&mut uart), 0x02);
    }

    #[test]
    fn trigger_levels_and_timeout() {
        for (fcr, trigger) in [(0x01, 1), (0x41, 4), (0x81, 8), (0xc1, 14)] {
            let mut uart = Uart::new();
            uart.write(2, fcr);
            uart.write(1, 0x01);
            assert_eq!(iir(&mut uart), 0xc1);
            let data: Vec<u8> = (0..16).collect();
            uart.receive(&data[..trigger - 1]);
            let below = if trigger == 1 { 0xc1 } else { 0xcc };
            assert_eq!(iir(&mut uart), below, "trigger {trigger}");
            uart.receive(&data[trigger - 1..trigger]);
            assert_eq!(iir(&mut uart), 0xc4, "trigger {trigger}");
            assert_eq!(uart.read(0), 0);
            let after_read = if trigger == 1 { 0xc1 } else { 0xcc };
            assert_eq!(iir(&mut uart), after_read, "trigger {trigger}");
            // Timeout is an RX data interrupt: ERBFI masks it.
            uart.write(1, 0x00);
            assert_eq!(iir(&mut uart), 0xc1);
        }
    }

    #[test]
    fn fifo_disabled_holds_one_byte() {
        let mut uart = Uart::new();
        uart.write(4, 0x02);
        uart.write(1, 0x01);
        assert_eq!(uart.rx_room(), 1);
        uart.receive(b"a");
        assert_eq!(uart.rx_room(), 0);
        assert_eq!(iir(&mut uart), 0x04, "no FIFO bits, no timeout");
        assert_eq!(uart.read(5) & 0x03, 0x01);
        assert_eq!(uart.read(0), b'a');
        assert_eq!(uart.read(5) & 0x01, 0);
        assert_eq!(iir(&mut uart), 0x01);
    }

    #[test]
    fn fifo_overrun_keeps_the_fifo() {
        let mut uart = Uart::new();
        uart.write(4, 0x02);
        uart.write(2, 0xc7);
        uart.write(1, 0x05);
        assert_eq!(uart.rx_room(), 16);
        let data: Vec<u8> = (0..17).collect();
        uart.receive(&data[..10]);
        assert_eq!(uart.rx_room(), 6);
        uart.receive(&data[10..]);
        assert_eq!(uart.rx_room(), 0);
        assert_eq!(iir(&mut uart), 0xc6);
        assert_eq!(uart.read(5), 0x63);
        assert_eq!(uart.read(5), 0x61, "reading LSR cleared OE");
        assert_eq!(iir(&mut uart), 0xc4);
        let read: Vec<u8> = (0..16).map(|_| uart.read(0)).collect();
        assert_eq!(read, data[..16], "the 17th byte was lost");
    }

    #[test]
    fn fcr_clears() {
        let mut uart = Uart::new();
        uart.write(4, 0x02);
        uart.write(2, 0x01);
        uart.receive(b"abc");
        // Clear RX keeps FIFOs on.
        uart.write(2, 0x03);
        assert_eq!(uart.rx_room(), 16);
        assert_eq!(uart.read(5) & 0x01, 0);
        // Clear TX is harmless: nothing waits to be sent.
        uart.receive(b"abc");
        uart.write(2, 0x05);
        assert_eq!(uart.rx_room(), 13);
        // Disabling the FIFOs clears them and ignores the other bits.
        uart.write(2, 0xc0);
        assert_eq!(uart.rx_room(), 1);
        assert_eq!(iir(&mut uart) & 0xc0, 0);
        // Enabling them clears the holding register too.
        uart.receive(b"z");
        uart.write(2, 0x01);
        assert_eq!(uart.rx_room(), 16);
    }

    #[test]
    fn loopback() {
        let mut uart = Uart::new();
        uart.write(2, 0x01);
        uart.write(1, 0x09);
        uart.write(4, 0x10);
        assert_eq!(uart.rx_room(), 0, "disconnected from outside");
        uart.receive(b"outside");
        // CTS, DSR and DCD dropped when the lines were disconnected.
        assert_eq!(iir(&mut uart), 0xc0);
        assert_eq!(uart.read(6), 0x0b);
        assert_eq!(uart.write(0, b'q'), None);
        assert_eq!(uart.read(5) & 0x01, 0x01);
        assert_eq!(uart.read(0), b'q');
        assert_eq!(uart.read(5) & 0x01, 0x00);
        // DTR, RTS, OUT1, OUT2 appear as DSR, CTS, RI, DCD.
        uart.write(4, 0x1f);
        assert_eq!(uart.read(6), 0xf0 | 0x0b);
        uart.write(4, 0x10 | 0x01);
        assert_eq!(uart.read(6), 0x20 | 0x0d, "RI fell: TERI");
        uart.write(4, 0x10 | 0x04);
        assert_eq!(uart.read(6), 0x40 | 0x02, "RI rose: only DSR's delta");
        // Leaving loopback reconnects the line.
        uart.write(4, 0x02);
        assert_eq!(uart.rx_room(), 16);
        assert_eq!(uart.read(6) & 0xf0, 0xb0);
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut uart = Uart::new();
        uart.write(1, 0x05);
        uart.write(3, 0x83);
        assert_eq!(uart.write(0, 0x0c), None, "DLAB: divisor, not THR");
        uart.write(1, 0x00);
        assert_eq!((uart.read(0), uart.read(1)), (0x0c, 0x00));
        uart.write(3, 0x03);
        assert_eq!(uart.read(1), 0x05, "IER kept");
        assert_eq!(uart.read(3), 0x03);
        uart.write(7, 0xa5);
        assert_eq!(uart.read(7), 0xa5);
        uart.write(1, 0xff);
        assert_eq!(uart.read(1), 0x0f);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::state::through_bytes;

    /// Mid-operation: FIFOs on with a trigger of 8, half full with 5
    /// bytes (a character-timeout interrupt pending), an overrun waiting
    /// in LSR, THRE pending, modem deltas, DLAB-set divisor.
    fn busy() -> Uart {
        let mut uart = Uart::new();
        uart.write(3, 0x80);
        uart.write(0, 0x01);
        uart.write(3, 0x03);
        uart.write(2, 0x81); // FIFOs on, trigger 8
        uart.write(4, 0x0b); // DTR, RTS, OUT2
        uart.write(1, 0x0f);
        uart.receive(b"hello");
        uart.write(0, b'!');
        uart.overrun = true;
        assert_eq!(uart.rx.len(), 5);
        assert!(uart.irq());
        uart
    }

    #[test]
    fn a_restored_uart_goes_on_as_the_original() {
        let mut original = busy();
        let state = through_bytes(&original.state());
        let mut restored = Uart::from_state(&state).unwrap();
        assert_eq!(restored, original);
        for step in 0..24u8 {
            let offset = [2, 5, 0, 6, 2, 0][usize::from(step) % 6];
            assert_eq!(
                original.read(offset),
                restored.read(offset),
                "offset {offset}"
            );
            assert_eq!(original.irq(), restored.irq());
            assert_eq!(original.rx_room(), restored.rx_room());
            if step == 9 {
                original.receive(b"abcdefgh");
                restored.receive(b"abcdefgh");
            }
        }
        assert_eq!(original.state(), restored.state());
    }

    #[test]
    fn a_uart_state_no_guest_reaches_is_refused() {
        let good = busy().state();
        let mut overfull = good.clone();
        overfull.rx = vec![0; 17];
        let mut holding = good.clone();
        holding.fifo_enabled = false;
        let mut trigger = good.clone();
        trigger.rx_trigger = 5;
        let mut ier = good.clone();
        ier.ier = 0x10;
        for (state, what) in [
            (overfull, "more received bytes"),
            (holding, "more received bytes"),
            (trigger, "trigger"),
            (ier, "register bits"),
        ] {
            let error = Uart::from_state(&state).unwrap_err();
            assert!(error.to_string().contains(what), "{error}");
        }
    }
}
