//! A primary/backup pair of real ftvm processes on this machine.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::events::EventFile;
use super::{Finished, ftvm};

/// Output of a running process, collected as it comes.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    bytes: Arc<Mutex<Vec<u8>>>,
    closed: Arc<AtomicBool>,
}

impl Collected {
    fn spawn(mut pipe: impl Read + Send + 'static) -> Self {
        let collected = Self::default();
        let (sink, closed) = (collected.bytes.clone(), collected.closed.clone());
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
            closed.store(true, Ordering::Release);
        });
        collected
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Waits (a bounded time) until the writer closed the pipe and every
    /// byte it wrote was taken.
    fn wait_closed(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.closed.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the output holds `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// One ftvm process with its output and its event stream.
#[derive(Debug)]
pub struct Side {
    pub child: Child,
    pub stdout: Collected,
    pub stderr: Collected,
    pub events: EventFile,
    /// Waited for by `finish`, past which its pid is no longer ours.
    reaped: bool,
}

impl Side {
    /// Starts `ftvm ARGS --events FILE`.
    pub fn start(args: &[String]) -> Self {
        Self::start_with_stdin(args, Stdio::null())
    }

    /// Starts `ftvm ARGS --events FILE` with `stdin` as its standard input.
    pub fn start_with_stdin(args: &[String], stdin: Stdio) -> Self {
        let events = EventFile::new();
        let mut command = ftvm();
        command
            .args(args)
            .arg("--events")
            .arg(events.path())
            .stdin(stdin);
        Self::spawn(command, events)
    }

    /// Its resident memory now, in KiB.
    pub fn resident_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// Starts ftvm in network namespace `namespace`.
    pub fn start_in(namespace: &str, args: &[String]) -> Self {
        let events = EventFile::new();
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", namespace, env!("CARGO_BIN_EXE_ftvm")])
            .args(args)
            .arg("--events")
            .arg(events.path())
            .stdin(Stdio::null());
        Self::spawn(command, events)
    }

    fn spawn(mut command: std::process::Command, events: EventFile) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ftvm");
        let stdout = Collected::spawn(child.stdout.take().unwrap());
        let stderr = Collected::spawn(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            events,
            reaped: false,
        }
    }

    /// Waits until the process has put `event` on its stream.
    pub fn wait_event(&self, event: &str) -> bool {
        self.events.wait_for(event, super::TIMEOUT).is_some()
    }

    pub fn child_running(&self) -> bool {
        // A process that ended but was not waited for is a zombie.
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "))
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signals a child we started and have not reaped.
        let ret = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(ret, 0, "cannot signal ftvm");
    }

    /// Kills the process and takes everything it wrote.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdout.wait_closed();
        self.stderr.wait_closed();
    }

    /// Waits for the process to end, killing it after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let Some((status, peak_kib)) = super::reap(&self.child, Instant::now() + timeout) else {
            self.kill();
            self.reaped = true;
            panic!(
                "ftvm did not finish within {timeout:?}; stderr: {}",
                self.stderr.text()
            );
        };
        self.reaped = true;
        self.stdout.wait_closed();
        self.stderr.wait_closed();
        Finished {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
            events: self.events.read(),
            peak_kib,
        }
    }
}

/// A test that fails half-way leaves no ftvm running.
impl Drop for Side {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The files and address a pair shares.
#[derive(Debug)]
pub struct PairSetup {
    pub dir: PathBuf,
    pub arbiter: PathBuf,
    pub key: PathBuf,
    pub address: SocketAddr,
}

impl PairSetup {
    pub fn new(test: &str) -> Self {
        Self::at(test, free_address())
    }

    /// A pair whose backup listens on `address`.
    pub fn at(test: &str, address: SocketAddr) -> Self {
        let dir = super::scratch_dir(test);
        let arbiter = dir.join("arbiter");
        let key = dir.join("key");
        std::fs::write(&key, b"a key of the ftvm tests, 32 bytes").unwrap();
        let init = super::run(&["arbiter", "init", arbiter.to_str().unwrap()]);
        assert_eq!(init.code(), 0, "{init:#?}");
        Self {
            dir,
            arbiter,
            key,
            address,
        }
    }

    fn common(&self, key: &Path) -> Vec<String> {
        [
            "--arbiter",
            self.arbiter.to_str().unwrap(),
            "--auth-key",
            key.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    pub fn backup_args(&self, kernel: &[&str]) -> Vec<String> {
        let mut args = vec!["backup".into(), "--listen".into(), self.address.to_string()];
        args.extend(self.common(&self.key));
        args.extend(kernel.iter().map(|s| s.to_string()));
        args
    }

    pub fn primary_args(&self, kernel: &[&str], key: &Path) -> Vec<String> {
        let mut args = vec![
            "primary".into(),
            "--backup".into(),
            self.address.to_string(),
        ];
        args.extend(self.common(key));
        args.extend(kernel.iter().map(|s| s.to_string()));
        args
    }

    /// Starts a backup and waits until it has started (a primary tries
    /// for `--wait-backup-ms` to reach it).
    pub fn start_backup(&self, kernel: &[&str]) -> Side {
        Self::started(Side::start(&self.backup_args(kernel)))
    }

    /// Waits until `side` says it started.
    pub fn started(side: Side) -> Side {
        assert!(
            side.wait_event("started"),
            "the backup never started: {}",
            side.stderr.text()
        );
        side
    }

    pub fn start_primary(&self, kernel: &[&str]) -> Side {
        Side::start(&self.primary_args(kernel, &self.key))
    }

    pub fn arbiter_status(&self) -> String {
        super::run(&["arbiter", "status", self.arbiter.to_str().unwrap()]).stdout
    }
}

/// `count` connections to `address`, held open until dropped, as a port
/// scanner or a misconfigured client would: every third sends 64 random
/// bytes, the others nothing.
pub fn flood(address: SocketAddr, count: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let connect = |i: usize| {
        std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {i}: {e}"))
    };
    (0..count)
        .map(|i| {
            let mut stream = connect(i);
            if i.is_multiple_of(3) {
                let _ = stream.write_all(&noise(64, &mut state));
            }
            stream
        })
        .collect()
}

/// `len` bytes that look like nothing in particular (xorshift from `state`).
pub fn noise(len: usize, state: &mut u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}

/// A loopback address with a port nobody uses (right now).
pub fn free_address() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// The tick numbers of ticker's output, in order.
pub fn tick_numbers(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|line| line.strip_prefix("tick ")?.split(' ').next()?.parse().ok())
        .collect()
}

/// Joins what the primary released with what the backup emitted after
/// taking over: the backup starts with output the primary may already have
/// released (at least once), so the longest part of the primary's output
/// that the backup's starts with is counted once.
pub fn join_outputs(primary: &str, backup: &str) -> String {
    let overlap = (0..=primary.len().min(backup.len()))
        .rev()
        .find(|&k| backup.is_char_boundary(k) && primary.ends_with(&backup[..k]))
        .unwrap_or(0);
    format!("{primary}{}", &backup[overlap..])
}

static ONE_PAIR_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Pairs run one at a time (docs/DESIGN.md §8): two cores, and timing matters.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_PAIR_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The exit status of a side that may not be live.
pub const NOT_LIVE: i32 = 116;

/// Ticks of the pair tests' guest: 0.8 s of guest time.
pub const TICKS: u64 = 40;

pub fn ticker() -> Vec<&'static str> {
    vec!["--kernel", "ticker", "--cmdline", "ticks=40 hz=50"]
}

/// Asserts `console` is what an uninterrupted run prints: every tick, in order.
pub fn assert_whole(console: &str, context: &str) {
    assert_eq!(
        tick_numbers(console),
        (1..=TICKS).collect::<Vec<_>>(),
        "{context}\n{console}"
    );
    assert!(
        console.starts_with("ticker: 40 ticks at 50 Hz\n"),
        "{context}\n{console}"
    );
    assert!(console.ends_with("ticker: done\n"), "{context}\n{console}");
}

/// A name of at most 8 characters for this test's hosts, unique among
/// concurrent test processes.
pub fn host_name(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 10_000)
}

/// Takes the arbiter's lock the way ftvm does (an OFD lock), as a third
/// process would, until dropped.
pub struct HeldFlag {
    _file: std::fs::File,
}

impl HeldFlag {
    pub fn hold(path: &std::path::Path) -> Self {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        // SAFETY: flock is plain data; zero means "whole file" for l_len.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as i16;
        lock.l_whence = libc::SEEK_SET as i16;
        // SAFETY: a valid descriptor and a valid flock.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        assert_eq!(ret, 0, "could not take the arbiter's lock");
        Self { _file: file }
    }
}

/// A seed for a test's random moments, printed so a failure can be re-run.
pub fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    eprintln!("seed {seed}");
    seed
}

/// Run `run`'s moment from `seed`: `from` plus a spread-out amount below
/// `span`, in milliseconds.
pub fn moment(seed: u64, run: u64, from: u64, span: u64) -> Duration {
    Duration::from_millis(
        from + (seed.wrapping_mul(run + 1).wrapping_mul(2_654_435_761) >> 7) % span,
    )
}
