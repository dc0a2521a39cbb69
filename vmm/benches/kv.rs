//! `kvstore` under real load, side by side in one run: `redis-benchmark -t
//! set,get -n 200 -c 4` against the guest under `ftvm run` and under a
//! primary/backup pair on the two hosts of `scripts/two-hosts.sh`
//! (requests per second, p50 and p99 latency, the pair/run ratio), and the
//! pair's log volume as a multiple of what the guest took in from outside
//! (received frames and disk reads), from the primary's `/metrics`;
//! redis-benchmark's default test list
//! the same way (per test rates and ratios); VM exits per request for SET
//! and GET (from `ftvm trace inspect` on a recorded run); and the log's
//! size after one key is overwritten 10 000 times on a 4 MiB disk.
//!
//! Needs root and redis-tools. Run with `cargo bench -p vmm --bench kv`
//! (scripts/bench.sh does).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{init_arbiter, script};

// The tests' view of the guest's LAN: its address and kvstore's options.
#[path = "../../tests/common/lan.rs"]
#[allow(dead_code)]
mod lan;

use lan::GUEST;

// The tests' Prometheus client.
#[path = "../../tests/common/metrics.rs"]
#[allow(dead_code)]
mod metrics;

/// Where the primary serves its metrics, inside its host.
const METRICS: &str = "127.0.0.1:9464";

const ROUNDS: usize = 5;
/// Rounds of redis-benchmark's default list (minutes each, emulated).
const DEFAULT_ROUNDS: usize = 2;
const HOSTS: &str = "kvbench";
const BACKUP: &str = "10.99.0.2:7000";

/// One ftvm process in a host, with its output gathered.
struct Ftvm {
    child: Child,
    stdout: thread::JoinHandle<String>,
    stderr: thread::JoinHandle<String>,
}

fn gather(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

impl Ftvm {
    fn start(host: char, args: &[String]) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("{HOSTS}-{host}")])
            .arg(env!("CARGO_BIN_EXE_ftvm"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = gather(child.stdout.take().unwrap());
        let stderr = gather(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Its metrics, served on `METRICS` in its host `host`.
    fn metrics(&self, host: char) -> metrics::Scrape {
        let stream = lan::connect_in(&format!("{HOSTS}-{host}"), METRICS);
        metrics::scrape_on(stream).expect("the primary serves its metrics")
    }

    /// SIGTERM, then everything it wrote.
    fn stop(mut self) -> (String, String) {
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        (self.stdout.join().unwrap(), self.stderr.join().unwrap())
    }
}

/// Waits until the guest answers PING.
fn wait_serving() {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let out = client("redis-cli", &["-h", GUEST, "PING"]);
        if out.contains("PONG") {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("kvstore never answered");
}

fn client(program: &str, args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", &format!("{HOSTS}-c"), program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[derive(Debug, Clone, Copy, Default)]
struct Result {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `redis-benchmark -t set,get -n 200 -c 4`.
fn benchmark() -> Vec<(String, Result)> {
    redis_benchmark(&["-t", "set,get"])
}

/// `redis-benchmark -n 200 -c 4 --csv` with `extra` options: per test, the
/// rps and latencies (its columns: test, rps, avg, min, p50, p95, p99, max).
fn redis_benchmark(extra: &[&str]) -> Vec<(String, Result)> {
    let mut args = vec!["-h", GUEST, "-n", "200", "-c", "4", "--csv"];
    args.extend_from_slice(extra);
    let csv = client("redis-benchmark", &args);
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<String> = line
                .split("\",\"")
                .map(|f| f.trim_matches('"').to_owned())
                .collect();
            let number = |i: usize| fields.get(i)?.parse::<f64>().ok();
            Some((
                fields.first()?.clone(),
                Result {
                    rps: number(1)?,
                    p50_ms: number(4)?,
                    p99_ms: number(6)?,
                },
            ))
        })
        .collect()
}

/// The bench's files: a disk, and a pair's key and flag.
struct Files {
    dir: PathBuf,
    disk: PathBuf,
    key: PathBuf,
    arbiter: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ftvm-bench-kv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = Self {
            disk: dir.join("kv.img"),
            key: dir.join("key"),
            arbiter: dir.join("arbiter"),
            dir,
        };
        std::fs::write(&files.key, b"the key of the ftvm benchmarks!!").unwrap();
        files
    }

    fn fresh_disk(&self) {
        std::fs::write(&self.disk, vec![0u8; 4 << 20]).unwrap();
    }

    /// `kvstore` on a fresh disk under `ftvm COMMAND...`, once it answers.
    fn alone(&self, command: &[&str]) -> Ftvm {
        self.fresh_disk();
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(lan::kvstore(&self.disk));
        let alone = Ftvm::start('a', &args);
        wait_serving();
        alone
    }

    /// A backup and a primary of `kvstore` on a fresh disk, once it answers.
    fn pair(&self) -> (Ftvm, Ftvm) {
        self.fresh_disk();
        init_arbiter(&self.arbiter);
        let pair_args = |role: &str, flag: &str| {
            let mut args = [role, flag, BACKUP, "--arbiter"].map(String::from).to_vec();
            args.push(self.arbiter.to_str().unwrap().into());
            args.extend(["--auth-key".into(), self.key.to_str().unwrap().into()]);
            args.extend(lan::kvstore(&self.disk));
            args
        };
        let backup = Ftvm::start('b', &pair_args("backup", "--listen"));
        thread::sleep(Duration::from_millis(300));
        let mut primary_args = pair_args("primary", "--backup");
        primary_args.extend(["--metrics".into(), METRICS.into()]);
        let primary = Ftvm::start('a', &primary_args);
        wait_serving();
        (backup, primary)
    }
}

/// The median over `rounds` of `pick` of `test`'s result.
fn median(rounds: &[Vec<(String, Result)>], test: &str, pick: fn(&Result) -> f64) -> f64 {
    let mut values: Vec<f64> = rounds
        .iter()
        .filter_map(|round| round.iter().find(|(name, _)| name == test))
        .map(|(_, result)| pick(result))
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn middle(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// SET and GET alone and in a pair, `ROUNDS` times alternating.
fn set_get(files: &Files) {
    let mut runs: Vec<Vec<(String, Result)>> = Vec::new();
    let mut pairs: Vec<Vec<(String, Result)>> = Vec::new();
    let mut log_ratio = Vec::new();
    for _ in 0..ROUNDS {
        script(&["up", HOSTS]);
        let alone = files.alone(&["run"]);
        runs.push(benchmark());
        alone.stop();
        let (backup, primary) = files.pair();
        pairs.push(benchmark());
        let metrics = primary.metrics('a');
        primary.stop();
        backup.stop();
        let value = |series: &str| metrics.value(series).unwrap_or(f64::NAN);
        let input = value("ftvm_disk_bytes_total{op=\"read\"}")
            + value("ftvm_net_bytes_total{direction=\"rx\"}");
        log_ratio.push(value("ftvm_log_bytes_total") / input);
        let (p50, _) = metrics.quantile("ftvm_output_hold_seconds", 0.5);
        let (p99, _) = metrics.quantile("ftvm_output_hold_seconds", 0.99);
        println!(
            "  pair round: outputs held p50 {:.0} us, p99 {:.0} us; primary stalled by flow control {:.0} ms",
            p50 * 1e6,
            p99 * 1e6,
            value("ftvm_stall_seconds_total") * 1e3
        );
        script(&["down", HOSTS]);
    }
    println!(
        "kvstore: redis-benchmark -t set,get -n 200 -c 4, {ROUNDS} rounds, run and pair alternating"
    );
    for test in ["SET", "GET"] {
        let (run_rps, pair_rps) = (
            median(&runs, test, |r| r.rps),
            median(&pairs, test, |r| r.rps),
        );
        println!(
            "  {test}: run {run_rps:.0} req/s (p50 {:.1} ms, p99 {:.1} ms), pair {pair_rps:.0} req/s (p50 {:.1} ms, p99 {:.1} ms); pair/run {:.3}",
            median(&runs, test, |r| r.p50_ms),
            median(&runs, test, |r| r.p99_ms),
            median(&pairs, test, |r| r.p50_ms),
            median(&pairs, test, |r| r.p99_ms),
            pair_rps / run_rps
        );
    }
    println!(
        "  log bytes / bytes the guest took in (frames received, disk read): median {:.2} over {ROUNDS} pairs",
        middle(log_ratio)
    );
}

/// redis-benchmark's default test list alone and in a pair, alternating.
fn default_list(files: &Files) {
    let mut runs: Vec<Vec<(String, Result)>> = Vec::new();
    let mut pairs: Vec<Vec<(String, Result)>> = Vec::new();
    for _ in 0..DEFAULT_ROUNDS {
        script(&["up", HOSTS]);
        let alone = files.alone(&["run"]);
        runs.push(redis_benchmark(&[]));
        alone.stop();
        let (backup, primary) = files.pair();
        pairs.push(redis_benchmark(&[]));
        primary.stop();
        backup.stop();
        script(&["down", HOSTS]);
    }
    println!(
        "kvstore: redis-benchmark -n 200 -c 4, its default tests, {DEFAULT_ROUNDS} rounds, run and pair alternating, medians"
    );
    let mut ratios = Vec::new();
    for (test, _) in runs.first().into_iter().flatten() {
        let (run_rps, pair_rps) = (
            median(&runs, test, |r| r.rps),
            median(&pairs, test, |r| r.rps),
        );
        ratios.push(pair_rps / run_rps);
        println!(
            "  {test:<36} run {run_rps:6.1} req/s, pair {pair_rps:6.1} req/s; pair/run {:.3}",
            pair_rps / run_rps
        );
    }
    let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "  pair/run over the {} tests: median {:.3} (target >= 0.9), lowest {lowest:.3} (target >= 0.8)",
        ratios.len(),
        middle(ratios.clone())
    );
}

/// VM exits per request for SET and GET: a recorded run of `requests`
/// requests, its exits from `ftvm trace inspect`, over the requests. The
/// count includes the boot and the timer's ticks meanwhile.
fn exits_per_request(files: &Files) {
    const REQUESTS: u32 = 400;
    println!("kvstore: VM exits per request, redis-benchmark -n {REQUESTS} -c 4, recorded");
    script(&["up", HOSTS]);
    let trace = files.dir.join("exits.trace");
    for test in ["set", "get"] {
        let recording = files.alone(&["record", "--trace", trace.to_str().unwrap()]);
        redis_benchmark(&["-t", test, "-n", &REQUESTS.to_string()]);
        recording.stop();
        let inspected = Command::new(env!("CARGO_BIN_EXE_ftvm"))
            .args(["trace", "inspect"])
            .arg(&trace)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&inspected.stdout);
        let exits: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("exits")?.trim().parse().ok())
            .unwrap_or(f64::NAN);
        println!(
            "  {}: {exits} exits for {REQUESTS} requests: {:.1} per request",
            test.to_uppercase(),
            exits / f64::from(REQUESTS)
        );
    }
    script(&["down", HOSTS]);
}

/// The log's size after one key is overwritten 10 000 times on a 4 MiB
/// disk, with INFO persistence's compaction count.
fn log_after_overwrites(files: &Files) {
    script(&["up", HOSTS]);
    let alone = files.alone(&["run"]);
    // No -r: every SET writes the same key, 300 bytes.
    client(
        "redis-benchmark",
        &[
            "-h", GUEST, "-n", "10000", "-c", "1", "-P", "50", "-t", "set", "-d", "300", "-q",
        ],
    );
    let info = client("redis-cli", &["-h", GUEST, "INFO", "persistence"]);
    let value = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or("?")
            .trim()
            .to_owned()
    };
    println!(
        "kvstore: one key overwritten 10000 times (300 bytes) on a 4 MiB disk: log {} bytes after {} compactions",
        value("aof_current_size"),
        value("aof_rewrites")
    );
    alone.stop();
    script(&["down", HOSTS]);
}

fn main() {
    let files = Files::new();
    set_get(&files);
    default_list(&files);
    exits_per_request(&files);
    log_after_overwrites(&files);
    let _ = std::fs::remove_dir_all(&files.dir);
}
