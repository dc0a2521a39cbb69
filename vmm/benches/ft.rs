//! What fault tolerance costs, measured side by side in one run through the
//! real binary on loopback: `ticker` alone against `ticker` as a pair (wall
//! time), the same pair with `--events` and with `--metrics` on both sides,
//! how long the output rule holds each console write and the log's
//! bandwidth (from the primary's `/metrics`), and the time from the
//! primary's failure to the first output of the new primary, and how long
//! a primary takes to pair with a backup whose port strangers flood.
//!
//! With `FTVM_BASE=/path/to/another/ftvm`, every round also runs `ticker`
//! alone and as a pair through that binary (say, the previous commit built
//! in another directory), and the medians are compared.
//!
//! Run with `cargo bench -p vmm --bench ft` (scripts/bench.sh does); with
//! `-- pairing`, only the pairing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const TAKEOVERS: usize = 10;
/// Two seconds of guest time, a console line every 10 ms.
const TICKER: &str = "ticks=200 hz=100";
/// A console line every 5 ms, so the first output after a takeover comes
/// soon after the backup is live.
const TAKEOVER_TICKER: &str = "ticks=600 hz=200";
/// How often the monitored pair's primary is scraped: far more often than
/// Prometheus would, to make the cost visible.
const SCRAPE_EVERY: Duration = Duration::from_millis(100);
/// Pairings measured with and without a flood, alternating.
const PAIRINGS: usize = 5;
/// Connections held open on the backup's port during a flooded pairing.
const FLOOD: usize = 300;
/// A short run: only the pairing is measured.
const PAIRING_TICKER: &str = "ticks=5 hz=50";

// The tests' Prometheus client.
#[path = "../../tests/common/metrics.rs"]
#[allow(dead_code)]
mod metrics;

use metrics::{Scrape, scrape};

fn this_ftvm() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ftvm"))
}

fn ftvm(binary: &Path) -> Command {
    let mut command = Command::new(binary);
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
    fn new(binary: &Path, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ftvm-bench-ft-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), b"the key of the ftvm benchmarks!!").unwrap();
        let status = ftvm(binary)
            .args(["arbiter", "init"])
            .arg(dir.join("arbiter"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    fn args(&self, role: &str, peer_flag: &str, port: u16, cmdline: &str) -> Vec<String> {
        [
            role,
            peer_flag,
            &format!("127.0.0.1:{port}"),
            "--arbiter",
            &self.path("arbiter"),
            "--auth-key",
            &self.path("key"),
            "--kernel",
            "ticker",
            "--cmdline",
            cmdline,
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

fn free_address() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends each chunk of `pipe` (and the moment it came) to the receiver.
fn watch(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(1..) = pipe.read(&mut buffer) {
            if tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    rx
}

/// How long a backup is given to listen before its primary starts: a VM
/// is made in milliseconds, and the same wait suits any build of ftvm.
const BACKUP_START: Duration = Duration::from_millis(500);

/// Starts a backup and gives it time to listen.
fn start_backup(binary: &Path, args: &[String]) -> Child {
    let backup = ftvm(binary)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(BACKUP_START);
    backup
}

fn wait_success(child: &mut Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} failed: {status}");
}

/// Wall time of `ticker` alone.
fn alone(binary: &Path) -> Duration {
    let start = Instant::now();
    let status = ftvm(binary)
        .args(["run", "--kernel", "ticker", "--cmdline", TICKER])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

/// What a pair is run with besides its guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    Not,
    /// `--events` on both sides.
    Events,
    /// `--metrics` on both sides, the primary's scraped every
    /// `SCRAPE_EVERY`.
    Metrics,
}

/// Wall time of the primary of a pair running `ticker`, and the last
/// metrics its endpoint served if it had one.
fn paired(binary: &Path, watched: Watched) -> (Duration, Option<Scrape>) {
    let files = PairFiles::new(binary, "pair");
    let port = free_address().port();
    let extra = |side: &str| -> Vec<String> {
        match watched {
            Watched::Not => Vec::new(),
            Watched::Events => vec!["--events".into(), files.path(&format!("{side}.jsonl"))],
            Watched::Metrics => vec!["--metrics".into(), free_address().to_string()],
        }
    };
    let mut backup_args = files.args("backup", "--listen", port, TICKER);
    backup_args.extend(extra("backup"));
    let mut backup = start_backup(binary, &backup_args);
    let mut primary_args = files.args("primary", "--backup", port, TICKER);
    let primary_extra = extra("primary");
    let metrics_at = (watched == Watched::Metrics).then(|| primary_extra[1].parse().unwrap());
    primary_args.extend(primary_extra);
    let start = Instant::now();
    let mut primary = ftvm(binary)
        .args(&primary_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let last_scrape = Arc::new(Mutex::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let scraper = metrics_at.map(|address: SocketAddr| {
        let (last_scrape, done) = (last_scrape.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(scraped) = scrape(address) {
                    *last_scrape.lock().unwrap() = Some(scraped);
                }
                thread::sleep(SCRAPE_EVERY);
            }
        })
    });
    wait_success(&mut primary, "the primary");
    let took = start.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Some(scraper) = scraper {
        scraper.join().unwrap();
    }
    wait_success(&mut backup, "the backup");
    let metrics = last_scrape.lock().unwrap().take();
    (took, metrics)
}

/// From failing the primary with `signal` to the first console byte of the
/// live backup.
fn takeover(signal: i32) -> Duration {
    let binary = this_ftvm();
    let files = PairFiles::new(&binary, "takeover");
    let port = free_address().port();
    let mut backup = start_backup(
        &binary,
        &files.args("backup", "--listen", port, TAKEOVER_TICKER),
    );
    let stdout = watch(backup.stdout.take().unwrap());
    let mut primary = ftvm(&binary)
        .args(files.args("primary", "--backup", port, TAKEOVER_TICKER))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(700));
    let failed = Instant::now();
    // SAFETY: signals a child we started and have not reaped.
    unsafe { libc::kill(primary.id() as i32, signal) };
    let first = stdout
        .recv_timeout(Duration::from_secs(30))
        .expect("the backup took over");
    let _ = primary.kill();
    let _ = primary.wait();
    wait_success(&mut backup, "the live backup");
    first.duration_since(failed)
}

/// From starting a primary to its `paired` event, with `strangers`
/// connections held open on the backup's port since before it started
/// (every third has sent 64 bytes of garbage, the others nothing).
fn pairing(strangers: usize) -> Duration {
    let binary = this_ftvm();
    let files = PairFiles::new(&binary, "pairing");
    let port = free_address().port();
    let mut backup = start_backup(
        &binary,
        &files.args("backup", "--listen", port, PAIRING_TICKER),
    );
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
    let events = files.path("primary.events");
    let start = Instant::now();
    let mut primary = ftvm(&binary)
        .args(files.args("primary", "--backup", port, PAIRING_TICKER))
        .args(["--events", &events])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !std::fs::read_to_string(&events).is_ok_and(|text| text.contains("\"paired\"")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the primary did not pair"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
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

/// Medians of one binary's rounds.
#[derive(Debug, Default)]
struct Timings {
    alone: Vec<Duration>,
    pair: Vec<Duration>,
}

impl Timings {
    fn round(&mut self, binary: &Path) {
        self.alone.push(alone(binary));
        self.pair.push(paired(binary, Watched::Not).0);
    }

    /// (alone, pair) medians.
    fn medians(&mut self) -> (Duration, Duration) {
        (median(&mut self.alone), median(&mut self.pair))
    }
}

fn main() {
    // `cargo bench -p vmm --bench ft -- pairing` measures the pairing alone.
    if std::env::args().any(|arg| arg == "pairing") {
        println!("ft: pairing on loopback");
        report_pairing();
        return;
    }
    let ours = this_ftvm();
    let base = std::env::var_os("FTVM_BASE").map(PathBuf::from);
    let (mut this, mut previous) = (Timings::default(), Timings::default());
    let (mut with_events, mut with_metrics, mut scrapes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        if let Some(base) = &base {
            previous.round(base);
        }
        this.round(&ours);
        with_events.push(paired(&ours, Watched::Events).0);
        let (took, metrics) = paired(&ours, Watched::Metrics);
        with_metrics.push(took);
        scrapes.extend(metrics);
    }
    let (alone, pair) = this.medians();
    let events = median(&mut with_events);
    let metrics = median(&mut with_metrics);
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
        "  pair --events {:.3} s: / pair {:.3}; pair --metrics (scraped every {} ms) {:.3} s: / pair {:.3}",
        events.as_secs_f64(),
        events.as_secs_f64() / pair.as_secs_f64(),
        SCRAPE_EVERY.as_millis(),
        metrics.as_secs_f64(),
        metrics.as_secs_f64() / pair.as_secs_f64()
    );
    if let Some(base) = &base {
        let (base_alone, base_pair) = previous.medians();
        println!(
            "  {}: alone {:.3} s, pair {:.3} s: pair / alone {:.3}; this pair / that pair {:.3}",
            base.display(),
            base_alone.as_secs_f64(),
            base_pair.as_secs_f64(),
            base_pair.as_secs_f64() / base_alone.as_secs_f64(),
            pair.as_secs_f64() / base_pair.as_secs_f64()
        );
    }
    // The output rule and the log, from the primary's last scrape, the
    // round with the median p50.
    let mut rounds: Vec<(f64, f64, f64, f64)> = scrapes
        .iter()
        .map(|metrics| {
            let (p50, held) = metrics.quantile("ftvm_output_hold_seconds", 0.5);
            let (p99, _) = metrics.quantile("ftvm_output_hold_seconds", 0.99);
            let log_bytes = metrics.value("ftvm_log_bytes_total").unwrap_or(f64::NAN);
            (p50, p99, held, log_bytes)
        })
        .collect();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(&(p50, p99, held, log_bytes)) = rounds.get(rounds.len() / 2) {
        println!(
            "  output rule: {held} console writes held, p50 {:.0} us, p99 {:.0} us (interpolated in the histogram's buckets)",
            p50 * 1e6,
            p99 * 1e6
        );
        println!(
            "  log bandwidth: {:.0} bytes/s",
            log_bytes / metrics.as_secs_f64()
        );
    }
    report_takeovers("SIGKILL (the kernel closes the connection)", libc::SIGKILL);
    report_takeovers("SIGSTOP (silence until the timeout)", libc::SIGSTOP);
    report_pairing();
}
