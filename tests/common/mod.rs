//! Helpers shared by the end-to-end tests: they run the real `ftvm` binary.
#![allow(dead_code)] // each test binary uses its own subset

pub mod disk;
pub mod events;
pub mod hosts;
pub mod lan;
pub mod metrics;
pub mod pair;
pub mod standby;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: guests are emulated instruction by instruction here, and the
/// machine may be loaded by other tests.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn ftvm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftvm"));
    command.stdin(Stdio::null());
    command
}

/// Processes that keep every core of this machine busy while they live,
/// at normal priority: other work on a host.
pub struct CpuHogs(Vec<Child>);

impl CpuHogs {
    pub fn start() -> Self {
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let spin = |_| {
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("start a busy loop")
        };
        Self((0..cores).map(spin).collect())
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// What a finished ftvm process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The event stream, when the process was given `--events`.
    pub events: Vec<serde_json::Value>,
    /// Its peak resident memory, in KiB.
    pub peak_kib: u64,
}

/// Waits for `child` until `deadline`: its status and peak resident memory
/// in KiB, or None if it still runs then.
pub fn reap(child: &Child, deadline: Instant) -> Option<(ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as i32;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, filled by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a child of ours, valid pointers.
        if unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } == pid {
            return Some((ExitStatus::from_raw(status), usage.ru_maxrss as u64));
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// Asserts ftvm failed with `status` and one line on stderr naming the
    /// problem, and that it did not panic.
    pub fn assert_refused(&self, status: i32, needle: &str) {
        assert_eq!(self.code(), status, "wrong status: {self:#?}");
        let lines: Vec<_> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "want a one-line error: {self:#?}");
        assert!(lines[0].starts_with("ftvm: error: "), "{self:#?}");
        assert!(
            lines[0].contains(needle),
            "stderr should mention `{needle}`: {self:#?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
    }

    /// The names of its events other than `progress`, in order.
    pub fn event_names(&self) -> Vec<String> {
        events::names(&self.events)
    }

    /// Its first `event`, if any.
    pub fn event(&self, event: &str) -> Option<&serde_json::Value> {
        self.events.iter().find(|e| e["event"] == event)
    }
}

/// Collects a child's output while waiting for it, killing it after
/// `timeout` (a hang is a failure, not a wait forever).
pub fn finish(mut child: Child, timeout: Duration) -> Finished {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let Some((status, peak_kib)) = reap(&child, Instant::now() + timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "ftvm did not finish within {timeout:?}; stderr so far: {}",
            stderr.join().unwrap()
        );
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        events: Vec::new(),
        peak_kib,
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Runs `ftvm ARGS` with stdin from /dev/null and waits for it.
pub fn run(args: &[&str]) -> Finished {
    let child = ftvm()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ftvm");
    finish(child, TIMEOUT)
}

/// A fresh directory for one test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ftvm-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Assembles and links one of the hand-written guests in tests/guests.
pub fn assemble_guest(name: &str, out_dir: &Path) -> PathBuf {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guests");
    let object = out_dir.join(format!("{name}.o"));
    let elf = out_dir.join(name);
    let status = Command::new("gcc")
        .arg("-c")
        .arg(guests.join(format!("{name}.S")))
        .arg("-o")
        .arg(&object)
        .status()
        .expect("run gcc (the tests need it to assemble guests)");
    assert!(status.success(), "assembling {name}.S failed");
    let status = Command::new("ld")
        .arg("-T")
        .arg(guests.join("guest.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(&object)
        .status()
        .expect("run ld");
    assert!(status.success(), "linking {name} failed");
    elf
}

/// The ticks the columns of `ftvm demo`'s view show, the first `sides`
/// columns joined: each side's column takes up where the one before
/// stopped, repeating what that side may have released (at least once);
/// panics if a column starts past it.
pub fn demo_ticks(view: &str, sides: usize) -> Vec<u64> {
    let column = |side: usize| {
        let lines = view.lines().filter_map(|row| row.split(" │ ").nth(side));
        pair::tick_numbers(&lines.map(|text| format!("{text}\n")).collect::<String>())
    };
    let mut ticks: Vec<u64> = Vec::new();
    for side in 0..sides {
        let last = ticks.last().copied().unwrap_or(0);
        let column = column(side);
        assert!(
            column.first().is_none_or(|&first| first <= last + 1),
            "side {side} starts past tick {last}: {view}"
        );
        ticks.extend(column.into_iter().filter(|&t| t > last));
    }
    ticks
}

/// `ftvm demo ARGS`, which must succeed and show every one of `needles`;
/// a `--net` demo must leave no namespace behind.
pub fn demo(args: &[&str], needles: &[&str]) -> Finished {
    let mut all = vec!["demo"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.code(), 0, "{out:#?}");
    for needle in needles {
        assert!(out.stdout.contains(needle), "{needle:?} not in {out:#?}");
    }
    if args.contains(&"--net") {
        lan::assert_no_demo_namespace();
    }
    out
}
