//! The console on a real terminal (a pty): raw mode, the Ctrl-A x escape,
//! the terminal restored afterwards; and stops by signal.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{TIMEOUT, finish, ftvm};

/// A ticker that runs until it is stopped.
fn endless_ticker() -> Command {
    let mut command = ftvm();
    command.args([
        "run",
        "--kernel",
        "ticker",
        "--cmdline",
        "ticks=100000 hz=20",
    ]);
    command
}

fn openpty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the null pointers ask for no
    // name and default settings.
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(ret, 0, "openpty failed");
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

fn termios(fd: &OwnedFd) -> libc::termios {
    // SAFETY: termios is plain data, filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid tty descriptor and pointer.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t
}

/// Everything the pty's master side reads, line by line as it arrives.
fn reader(mut master: File) -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut byte = [0u8; 1];
        while let Ok(1) = master.read(&mut byte) {
            if tx.send(byte[0]).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(output: &mpsc::Receiver<u8>, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match output.recv_timeout(left) {
            Ok(byte) => seen.push(byte as char),
            Err(_) => panic!("`{needle}` never appeared on the terminal; saw {seen:?}"),
        }
    }
}

#[test]
fn a_terminal_is_raw_while_the_guest_runs_and_restored_after_ctrl_a_x() {
    let (master, slave) = openpty();
    let before = termios(&slave);
    let mut input = master.try_clone().unwrap();
    let output = reader(master);
    let child = endless_ticker()
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    wait_for(&output, &mut seen, "tick 1 ");
    let raw = termios(&slave);
    assert_eq!(
        raw.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG),
        0,
        "not raw"
    );

    // Ctrl-C reaches the guest as a byte instead of killing ftvm.
    input.write_all(b"q\x03r").unwrap();
    wait_for(&output, &mut seen, "Q\x03R");
    input.write_all(b"\x01x").unwrap();
    let out = finish(child, TIMEOUT);
    assert_eq!(out.code(), 0, "{out:#?}");
    let after = termios(&slave);
    assert_eq!(
        (after.c_iflag, after.c_oflag, after.c_lflag),
        (before.c_iflag, before.c_oflag, before.c_lflag),
        "terminal not restored"
    );
}

fn stopped_by(signal: libc::c_int, status: i32, message: &str) {
    let mut child = endless_ticker()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    // SAFETY: kill with a pid we own and a valid signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let out = finish(child, TIMEOUT);
    assert_eq!(out.code(), status, "{out:#?}");
    assert!(out.stderr.contains(message), "{out:#?}");
}

#[test]
fn sigint_stops_the_vm_with_status_130() {
    stopped_by(libc::SIGINT, 130, "interrupted");
}

#[test]
fn sigterm_stops_the_vm_with_status_143() {
    stopped_by(libc::SIGTERM, 143, "terminated");
}
