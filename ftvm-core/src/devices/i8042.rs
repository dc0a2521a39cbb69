//! Just enough of the Intel 8042 PS/2 controller (0x60 data, 0x64
//! status/command) for a PC guest to reset the machine, and to find the
//! controller alive on the way.
//!
//! No keyboard or mouse is attached and no interrupt is raised (IRQ 1 and
//! 12 stay low). Status reads never make a guest wait: the input buffer is
//! never full, and the output buffer is full only while a response byte
//! waits to be read.

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::state::{InvalidState, check};

const PORT_DATA: u16 = 0x60;
const PORT_COMMAND: u16 = 0x64;

const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM_FLAG: u8 = 0x04;

const CMD_READ_COMMAND_BYTE: u8 = 0x20;
const CMD_WRITE_COMMAND_BYTE: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KEYBOARD_TEST: u8 = 0xab;
const CMD_DISABLE_KEYBOARD: u8 = 0xad;
const CMD_ENABLE_KEYBOARD: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
/// 0xf0–0xff pulse output port bits 3:0 low; bit 0 is the CPU reset line.
const CMD_PULSE_OUTPUT_PORT: u8 = 0xf0;

const SELF_TEST_PASSED: u8 = 0x55;
const INTERFACE_TEST_PASSED: u8 = 0x00;

/// Command byte bit 2 is the system flag; bit 4 disables the keyboard.
const COMMAND_BYTE_SYSTEM_FLAG: u8 = 0x04;
const COMMAND_BYTE_KEYBOARD_DISABLED: u8 = 0x10;

/// Output port bit 0 drives the CPU's reset line (active low); bit 1 is
/// the A20 gate.
const OUTPUT_PORT_NOT_RESET: u8 = 0x01;
const OUTPUT_PORT_POWER_ON: u8 = 0x03;

// Guest misuses logged once per controller (bits of `I8042::warned`).
const WARN_PORT: u8 = 1 << 0;
const WARN_COMMAND: u8 = 1 << 1;
const WARN_KEYBOARD: u8 = 1 << 2;

/// The 8042 controller without devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042 {
    /// A response byte waiting in the output buffer.
    output: Option<u8>,
    command_byte: u8,
    output_port: u8,
    /// A command whose data byte comes next on port 0x60.
    awaiting_data: Option<u8>,
    warned: u8,
}

/// The state of the 8042: the response byte waiting to be read, the
/// command byte, the output port, and a command waiting for its data byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042State {
    output: Option<u8>,
    command_byte: u8,
    output_port: u8,
    awaiting_data: Option<u8>,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    /// Power-on state: nothing to read, command byte 0, reset line high.
    pub fn new() -> Self {
        I8042 {
            output: None,
            command_byte: 0,
            output_port: OUTPUT_PORT_POWER_ON,
            awaiting_data: None,
            warned: 0,
        }
    }

    /// Its state, for a snapshot.
    pub fn state(&self) -> I8042State {
        I8042State {
            output: self.output,
            command_byte: self.command_byte,
            output_port: self.output_port,
            awaiting_data: self.awaiting_data,
        }
    }

    /// The controller in `state`, refused when no guest could have reached
    /// it.
    pub fn from_state(state: &I8042State) -> Result<Self, InvalidState> {
        check(
            matches!(
                state.awaiting_data,
                None | Some(CMD_WRITE_COMMAND_BYTE | CMD_WRITE_OUTPUT_PORT)
            ),
            "i8042",
            "a data byte awaited by a command that takes none",
        )?;
        Ok(I8042 {
            output: state.output,
            command_byte: state.command_byte,
            output_port: state.output_port,
            awaiting_data: state.awaiting_data,
            warned: 0,
        })
    }

    fn warn_once(&mut self, bit: u8) -> bool {
        let first = self.warned & bit == 0;
        self.warned |= bit;
        first
    }

    /// Port read: 0x60 takes the waiting response byte, 0x64 is the status.
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            // An empty output buffer reads as 0.
            PORT_DATA => self.output.take().unwrap_or(0),
            PORT_COMMAND => {
                let full = if self.output.is_some() {
                    STATUS_OUTPUT_FULL
                } else {
                    0
                };
                let system = if self.command_byte & COMMAND_BYTE_SYSTEM_FLAG != 0 {
                    STATUS_SYSTEM_FLAG
                } else {
                    0
                };
                full | system
            }
            _ => {
                if self.warn_once(WARN_PORT) {
                    warn!(port, "i8042: read of an unknown port");
                }
                0xff
            }
        }
    }

    /// Returns true when the write requests a system reset (0xfe to port
    /// 0x64, or a write-output-port command 0xd1 followed by a data byte
    /// with bit 0 clear).
    pub fn write(&mut self, port: u16, value: u8) -> bool {
        match port {
            PORT_DATA => self.write_data(value),
            PORT_COMMAND => self.write_command(value),
            _ => {
                if self.warn_once(WARN_PORT) {
                    warn!(port, value, "i8042: write to an unknown port");
                }
                false
            }
        }
    }

    fn write_command(&mut self, command: u8) -> bool {
        // A new command abandons one still waiting for its data byte.
        self.awaiting_data = None;
        match command {
            CMD_READ_COMMAND_BYTE => self.output = Some(self.command_byte),
            CMD_WRITE_COMMAND_BYTE | CMD_WRITE_OUTPUT_PORT => self.awaiting_data = Some(command),
            CMD_SELF_TEST => {
                self.command_byte |= COMMAND_BYTE_SYSTEM_FLAG;
                self.output = Some(SELF_TEST_PASSED);
            }
            CMD_KEYBOARD_TEST => self.output = Some(INTERFACE_TEST_PASSED),
            CMD_DISABLE_KEYBOARD => self.command_byte |= COMMAND_BYTE_KEYBOARD_DISABLED,
            CMD_ENABLE_KEYBOARD => self.command_byte &= !COMMAND_BYTE_KEYBOARD_DISABLED,
            CMD_READ_OUTPUT_PORT => self.output = Some(self.output_port),
            CMD_PULSE_OUTPUT_PORT.. => return command & OUTPUT_PORT_NOT_RESET == 0,
            _ => {
                if self.warn_once(WARN_COMMAND) {
                    warn!(command, "i8042: unsupported controller command ignored");
                }
            }
        }
        false
    }

    fn write_data(&mut self, value: u8) -> bool {
        match self.awaiting_data.take() {
            Some(CMD_WRITE_COMMAND_BYTE) => self.command_byte = value,
            Some(_) => {
                self.output_port = value;
                return value & OUTPUT_PORT_NOT_RESET == 0;
            }
            None => {
                if self.warn_once(WARN_KEYBOARD) {
                    warn!(value, "i8042: byte for the keyboard, but none is attached");
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_by_pulse_command() {
        let mut kbc = I8042::new();
        assert!(kbc.write(0x64, 0xfe));
        // Pulses that leave bit 0 alone do not reset.
        assert!(!kbc.write(0x64, 0xff));
        assert!(!kbc.write(0x64, 0xfd));
        assert!(kbc.write(0x64, 0xf0));
        // 0xfe on the data port is a keyboard byte, not a reset.
        assert!(!kbc.write(0x60, 0xfe));
    }

    #[test]
    fn reset_by_output_port_write() {
        let mut kbc = I8042::new();
        assert!(!kbc.write(0x64, 0xd1));
        assert!(!kbc.write(0x60, 0x03), "A20 on, reset line high");
        kbc.write(0x64, 0xd0);
        assert_eq!(kbc.read(0x60), 0x03);
        assert!(!kbc.write(0x64, 0xd1));
        assert!(kbc.write(0x60, 0x02));
        // The data byte only counts right after 0xd1.
        assert!(!kbc.write(0x60, 0x00));
        kbc.write(0x64, 0xd1);
        kbc.write(0x64, 0x20);
        assert!(!kbc.write(0x60, 0x00), "another command cancelled 0xd1");
    }

    #[test]
    fn self_test_response() {
        let mut kbc = I8042::new();
        assert_eq!(kbc.read(0x64) & 0x03, 0, "nothing waits, input empty");
        kbc.write(0x64, 0xaa);
        assert_eq!(kbc.read(0x64) & 0x03, 0x01);
        assert_eq!(kbc.read(0x60), 0x55);
        assert_eq!(kbc.read(0x64), 0x04, "buffer empty, system flag set");
    }

    #[test]
    fn command_byte_round_trip() {
        let mut kbc = I8042::new();
        kbc.write(0x64, 0x60);
        kbc.write(0x60, 0x65);
        kbc.write(0x64, 0xad);
        kbc.write(0x64, 0x20);
        assert_eq!(kbc.read(0x64) & 0x01, 0x01);
        assert_eq!(kbc.read(0x60), 0x75);
        kbc.write(0x64, 0xae);
        kbc.write(0x64, 0x20);
        assert_eq!(kbc.read(0x60), 0x65);
        kbc.write(0x64, 0xab);
        assert_eq!(kbc.read(0x60), 0x00);
        assert_eq!(kbc.read(0x64) & 0x01, 0);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::state::through_bytes;

    #[test]
    fn a_restored_i8042_goes_on_as_the_original() {
        let mut original = I8042::new();
        original.write(0x64, 0xaa); // a response waits
        original.write(0x64, 0xd1); // a command waits for its data byte
        let state = through_bytes(&original.state());
        let mut restored = I8042::from_state(&state).unwrap();
        assert_eq!(restored, original);
        for kbc in [&mut original, &mut restored] {
            assert_eq!(kbc.read(0x64), 0x05);
            assert_eq!(kbc.read(0x60), 0x55);
            assert!(kbc.write(0x60, 0x02), "the awaited byte resets");
        }
    }

    #[test]
    fn an_i8042_awaiting_data_for_a_command_without_any_is_refused() {
        let mut state = I8042::new().state();
        state.awaiting_data = Some(CMD_SELF_TEST);
        let error = I8042::from_state(&state).unwrap_err();
        assert!(error.to_string().contains("awaited"), "{error}");
    }
}
