//! The guest console's input side: stdin, read on its own thread, only as
//! fast as the guest takes bytes (see [`SerialWindow`]).
//!
//! Stdin that is not a terminal is read to EOF. A terminal is put in raw
//! mode so that every key reaches the guest, with QEMU's escape: Ctrl-A x
//! quits, Ctrl-A Ctrl-A sends one Ctrl-A. The terminal is restored however
//! ftvm ends: on drop of the guard, and from the panic hook.

use std::io::{self, IsTerminal, Read};
use std::sync::{Arc, OnceLock};
use std::thread;

use crossbeam_channel::Sender;
use ft_logging::StopReason;

use super::{HostInput, SerialWindow, StopSignal, VcpuKicker};

const CTRL_A: u8 = 0x01;

/// The terminal settings to restore, for the panic hook.
static SAVED_TERMINAL: OnceLock<libc::termios> = OnceLock::new();

/// Raw mode on stdin's terminal for as long as it lives.
#[derive(Debug)]
pub struct TerminalGuard(());

impl TerminalGuard {
    fn enter_raw() -> io::Result<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer to a termios.
        if unsafe { libc::tcgetattr(0, &mut original) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = SAVED_TERMINAL.set(original);
        let mut raw = original;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep newline translation on output, as QEMU does, so guest lines
        // do not staircase.
        raw.c_oflag |= libc::OPOST | libc::ONLCR;
        // SAFETY: fd 0 and a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        Ok(Self(()))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn restore_terminal() {
    if let Some(original) = SAVED_TERMINAL.get() {
        // SAFETY: fd 0 and the termios saved from it.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, original) };
    }
}

/// The QEMU-style escape sequence on a terminal's input.
#[derive(Debug, Default)]
struct EscapeFilter {
    after_ctrl_a: bool,
}

impl EscapeFilter {
    /// Appends the bytes meant for the guest to `out`; true when the user
    /// asked to quit.
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &byte in input {
            if std::mem::take(&mut self.after_ctrl_a) {
                match byte {
                    b'x' | b'X' => return true,
                    CTRL_A => out.push(CTRL_A),
                    _ => {}
                }
            } else if byte == CTRL_A {
                self.after_ctrl_a = true;
            } else {
                out.push(byte);
            }
        }
        false
    }
}

/// Starts the thread that forwards stdin to the guest's serial backlog,
/// reading only while `window` has room. Returns the raw-mode guard when
/// stdin is a terminal.
pub fn spawn_stdin_reader(
    input: Sender<HostInput>,
    window: SerialWindow,
    stop: Arc<StopSignal>,
    kicker: VcpuKicker,
) -> io::Result<Option<TerminalGuard>> {
    let terminal = io::stdin().is_terminal();
    let guard = if terminal {
        Some(TerminalGuard::enter_raw()?)
    } else {
        None
    };
    thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buffer = [0u8; 4096];
        let mut escape = EscapeFilter::default();
        let mut bytes = Vec::new();
        loop {
            let room = window.wait_room().min(buffer.len());
            let n = match stdin.read(&mut buffer[..room]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            bytes.clear();
            let quit = if terminal {
                escape.filter(&buffer[..n], &mut bytes)
            } else {
                bytes.extend_from_slice(&buffer[..n]);
                false
            };
            window.opened(bytes.len());
            if !bytes.is_empty() && input.send(HostInput::Serial(bytes.clone())).is_err() {
                return;
            }
            if quit {
                stop.request(StopReason::UserQuit);
                let _ = input.send(HostInput::Wake);
                kicker.kick_until_done();
                return;
            }
        }
        let _ = input.send(HostInput::SerialClosed);
    })?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let quit = EscapeFilter::default().filter(input, &mut out);
        (out, quit)
    }

    #[test]
    fn ctrl_a_x_quits_and_ctrl_a_ctrl_a_sends_one() {
        assert_eq!(run(b"ab\x01x"), (b"ab".to_vec(), true));
        assert_eq!(run(b"a\x01\x01b"), (b"a\x01b".to_vec(), false));
        assert_eq!(run(b"a\x01qb"), (b"ab".to_vec(), false));
    }

    #[test]
    fn an_escape_split_across_reads_still_quits() {
        let mut filter = EscapeFilter::default();
        let mut out = Vec::new();
        assert!(!filter.filter(b"hi\x01", &mut out));
        assert!(filter.filter(b"x", &mut out));
        assert_eq!(out, b"hi");
    }
}
