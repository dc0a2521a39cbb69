//! What fault tolerance costs, measured side by side in one run through the
//! real binary on loopback: `ticker` alone against `ticker` as a pair (wall
//! time), how long the output rule holds each console write, the log's
//! bandwidth, the time from the primary's failure to the first output
//! of the new primary, and how long a primary takes to pair with a backup
//! whose port strangers flood.
//!
//! Run with `cargo bench -p vmm --bench ft` (scripts/bench.sh does); with
//! `-- pairing`, only the pairing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const TAKEOVERS: usize = 10;
/// Two seconds of guest time, a console line every 10 ms.
const TICKER: &str = "ticks=200 hz=100";
/// A console line every 5 ms, so the first output after a takeover comes
/// soon after the backup is live.
const TAKEOVER_TICKER: &str = "ticks=600 hz=200";
/// Pairings measured with and without a flood, alternating.
const PAIRINGS: usize = 5;
/// Connections held open on the backup's port during a flooded pairing.
const FLOOD: usize = 300;
/// A short run: only the pairing is measured.
const PAIRING_TICKER: &str = "ticks=5 hz=50";

fn ftvm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftvm"));
    command.stdin(Stdio::null());
    command
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A fresh key and go-live flag for one pair.
struct PairFiles {
    dir: PathBuf,
}

impl PairFiles {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ftvm-bench-ft-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), b"the key of the ftvm benchmarks!!").unwrap();
        let status = ftvm()
            .args(["arbiter", "init"])
            .arg(dir.join("arbiter"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Self { dir }
    }

    fn args(&self, role: &str, peer_flag: &str, port: u16, cmdline: &str) -> Vec<String> {
        let path = |name: &str| self.dir.join(name).to_str().unwrap().to_string();
        [
            role,
            peer_flag,
            &format!("127.0.0.1:{port}"),
            "--arbiter",
            &path("arbiter"),
            "--auth-key",
            &path("key"),
            "--kernel",
            "ticker",
            "--cmdline",
            cmdline,
            "--log-level",
            "info",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Drop for PairFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends each line of `pipe` (and the moment of its first byte) to `lines`.
fn watch(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buffer) {
            let now = Instant::now();
            if tx
                .send((now, String::from_utf8_lossy(&buffer[..n]).into_owned()))
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Starts a backup and waits until it listens.
fn start_backup(
    files: &PairFiles,
    port: u16,
    cmdline: &str,
) -> (Child, mpsc::Receiver<(Instant, String)>) {
    let mut backup = ftvm()
        .args(files.args("backup", "--listen", port, cmdline))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch(backup.stdout.take().unwrap());
    let stderr = watch(backup.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("waiting for a primary") {
        let (_, text) = stderr
            .recv_timeout(Duration::from_secs(30))
            .expect("the backup listens");
        seen.push_str(&text);
    }
    thread::spawn(move || for _ in stderr {});
    (backup, stdout)
}

fn wait_success(child: &mut Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} failed: {status}");
}

/// Wall time of `ticker` alone.
fn alone() -> Duration {
    let start = Instant::now();
    let status = ftvm()
        .args(["run", "--kernel", "ticker", "--cmdline", TICKER])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

/// What the primary's pair summary says.
#[derive(Debug, Default)]
struct Summary {
    wait_p50_us: u64,
    wait_p99_us: u64,
    held: u64,
    bytes_per_s: u64,
}

fn parse_summary(stderr: &str) -> Summary {
    let line = stderr
        .lines()
        .find(|line| line.contains("primary: pair summary"))
        .unwrap_or_else(|| panic!("no pair summary in: {stderr}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    Summary {
        wait_p50_us: field("output_wait_p50_us"),
        wait_p99_us: field("output_wait_p99_us"),
        held: field("held_outputs"),
        bytes_per_s: field("log_bytes_per_s"),
    }
}

/// Wall time of the primary of a pair running `ticker`, and its summary.
fn paired() -> (Duration, Summary) {
    let files = PairFiles::new("pair");
    let port = free_port();
    let (mut backup, _stdout) = start_backup(&files, port, TICKER);
    let start = Instant::now();
    let primary = ftvm()
        .args(files.args("primary", "--backup", port, TICKER))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = primary.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(output.status.success(), "the primary failed");
    wait_success(&mut backup, "the backup");
    (
        took,
        parse_summary(&String::from_utf8_lossy(&output.stderr)),
    )
}

/// From failing the primary with `signal` to the first console byte of the
/// live backup.
fn takeover(signal: i32) -> Duration {
    let files = PairFiles::new("takeover");
    let port = free_port();
    let (mut backup, stdout) = start_backup(&files, port, TAKEOVER_TICKER);
    let mut primary = ftvm()
        .args(files.args("primary", "--backup", port, TAKEOVER_TICKER))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(700));
    let failed = Instant::now();
    // SAFETY: signals a child we started and have not reaped.
    unsafe { libc::kill(primary.id() as i32, signal) };
    let (first, _) = stdout
        .recv_timeout(Duration::from_secs(30))
        .expect("the backup took over");
    let _ = primary.kill();
    let _ = primary.wait();
    wait_success(&mut backup, "the live backup");
    first.duration_since(failed)
}

/// From starting a primary to its word that it paired, with `strangers`
/// connections held open on the backup's port since before it started
/// (every third has sent 64 bytes of garbage, the others nothing).
fn pairing(strangers: usize) -> Duration {
    let files = PairFiles::new("pairing");
    let port = free_port();
    let (mut backup, _stdout) = start_backup(&files, port, PAIRING_TICKER);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let held: Vec<TcpStream> = (0..strangers)
        .map(|i| {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            if i.is_multiple_of(3) {
                let garbage: Vec<u8> = (0..64)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        (state >> 56) as u8
                    })
                    .collect();
                let _ = stream.write_all(&garbage);
            }
            stream
        })
        .collect();
    let start = Instant::now();
    let mut primary = ftvm()
        .args(files.args("primary", "--backup", port, PAIRING_TICKER))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = watch(primary.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("paired with the backup") {
        let (_, text) = stderr
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the primary did not pair: {seen}"));
        seen.push_str(&text);
    }
    let took = start.elapsed();
    thread::spawn(move || for _ in stderr {});
    wait_success(&mut primary, "the primary");
    wait_success(&mut backup, "the backup");
    drop(held);
    took
}

fn report_pairing() {
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    for _ in 0..PAIRINGS {
        quiet.push(pairing(0));
        flooded.push(pairing(FLOOD));
    }
    let max = *flooded.iter().max().unwrap();
    let (quiet, flooded) = (median(&mut quiet), median(&mut flooded));
    println!(
        "  pairing (primary start to paired), {PAIRINGS} rounds alternating: quiet port {:.0} ms, {FLOOD} strangers on the port {:.0} ms (max {:.0} ms): flooded / quiet {:.2}",
        quiet.as_secs_f64() * 1e3,
        flooded.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        flooded.as_secs_f64() / quiet.as_secs_f64()
    );
}

fn report_takeovers(what: &str, signal: i32) {
    let mut samples: Vec<Duration> = (0..TAKEOVERS).map(|_| takeover(signal)).collect();
    let max = *samples.iter().max().unwrap();
    println!(
        "  takeover, {what}: median {:.0} ms, max {:.0} ms over {TAKEOVERS} runs (target < 500 ms)",
        median(&mut samples).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench -p vmm --bench ft -- pairing` measures the pairing alone.
    if std::env::args().any(|arg| arg == "pairing") {
        println!("ft: pairing on loopback");
        report_pairing();
        return;
    }
    let (mut alone_times, mut pair_times, mut summaries) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        alone_times.push(alone());
        let (took, summary) = paired();
        pair_times.push(took);
        summaries.push(summary);
    }
    let (alone, pair) = (median(&mut alone_times), median(&mut pair_times));
    summaries.sort_by_key(|s| s.wait_p50_us);
    let summary = &summaries[summaries.len() / 2];
    println!(
        "ft: ticker {TICKER} on loopback, {ROUNDS} rounds, medians; default timeout 300 ms, heartbeat 50 ms"
    );
    println!(
        "  alone {:.3} s, pair {:.3} s: pair / alone {:.3} (target <= 1.05)",
        alone.as_secs_f64(),
        pair.as_secs_f64(),
        pair.as_secs_f64() / alone.as_secs_f64()
    );
    println!(
        "  output rule: {} console writes held, p50 {} us, p99 {} us",
        summary.held, summary.wait_p50_us, summary.wait_p99_us
    );
    println!("  log bandwidth: {} bytes/s", summary.bytes_per_s);
    report_takeovers("SIGKILL (the kernel closes the connection)", libc::SIGKILL);
    report_takeovers("SIGSTOP (silence until the timeout)", libc::SIGSTOP);
    report_pairing();
}
