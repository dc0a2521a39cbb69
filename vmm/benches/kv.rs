//! `kvstore` under real load, side by side in one run: `redis-benchmark -t
//! set,get -n 200 -c 4` against the guest under `ftvm run` and under a
//! primary/backup pair on the two hosts of `scripts/two-hosts.sh`
//! (requests per second, p50 and p99 latency, the pair/run ratio), and the
//! pair's log volume as a multiple of what the guest took in from outside
//! (received frames and disk reads), from the primary's `/metrics`.
//!
//! Needs root and redis-tools. Run with `cargo bench -p vmm --bench kv`
//! (scripts/bench.sh does).

use std::io::Read;
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

    /// SIGTERM, then everything it wrote.
    fn stop(mut self) -> (String, String) {
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        (self.stdout.join().unwrap(), self.stderr.join().unwrap())
    }

    /// Its metrics, served on `METRICS` in its host `host`.
    fn metrics(&self, host: char) -> metrics::Scrape {
        let stream = lan::connect_in(&format!("{HOSTS}-{host}"), METRICS);
        metrics::scrape_on(stream).expect("the primary serves its metrics")
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

/// `redis-benchmark --csv`: test, rps, avg, min, p50, p95, p99, max.
fn benchmark() -> Vec<(String, Result)> {
    let csv = client(
        "redis-benchmark",
        &[
            "-h", GUEST, "-t", "set,get", "-n", "200", "-c", "4", "--csv",
        ],
    );
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<String> = line
                .split(',')
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

fn main() {
    let dir = std::env::temp_dir().join(format!("ftvm-bench-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("kv.img");
    let (key, arbiter) = (dir.join("key"), dir.join("arbiter"));
    std::fs::write(&key, b"the key of the ftvm benchmarks!!").unwrap();
    let mut runs: Vec<Vec<(String, Result)>> = Vec::new();
    let mut pairs: Vec<Vec<(String, Result)>> = Vec::new();
    let mut log_ratio = Vec::new();
    for _ in 0..ROUNDS {
        script(&["up", HOSTS]);
        std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
        let mut args = vec!["run".to_string()];
        args.extend(lan::kvstore(&disk));
        let alone = Ftvm::start('a', &args);
        wait_serving();
        runs.push(benchmark());
        alone.stop();

        std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
        init_arbiter(&arbiter);
        let pair_args = |role: &str, flag: &str| {
            let mut args = [role, flag, BACKUP, "--arbiter"].map(String::from).to_vec();
            args.push(arbiter.to_str().unwrap().into());
            args.extend(["--auth-key".into(), key.to_str().unwrap().into()]);
            args.extend(lan::kvstore(&disk));
            args
        };
        let backup = Ftvm::start('b', &pair_args("backup", "--listen"));
        thread::sleep(Duration::from_millis(300));
        let mut primary_args = pair_args("primary", "--backup");
        primary_args.extend(["--metrics".into(), METRICS.into()]);
        let primary = Ftvm::start('a', &primary_args);
        wait_serving();
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
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "kvstore: redis-benchmark -t set,get -n 200 -c 4, {ROUNDS} rounds, run and pair alternating"
    );
    for test in ["SET", "GET"] {
        let median = |rounds: &[Vec<(String, Result)>], pick: fn(&Result) -> f64| {
            let mut values: Vec<f64> = rounds
                .iter()
                .filter_map(|round| round.iter().find(|(name, _)| name == test))
                .map(|(_, result)| pick(result))
                .collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (run_rps, pair_rps) = (median(&runs, |r| r.rps), median(&pairs, |r| r.rps));
        println!(
            "  {test}: run {run_rps:.0} req/s (p50 {:.1} ms, p99 {:.1} ms), pair {pair_rps:.0} req/s (p50 {:.1} ms, p99 {:.1} ms); pair/run {:.3}",
            median(&runs, |r| r.p50_ms),
            median(&runs, |r| r.p99_ms),
            median(&pairs, |r| r.p50_ms),
            median(&pairs, |r| r.p99_ms),
            pair_rps / run_rps
        );
    }
    log_ratio.sort_by(f64::total_cmp);
    println!(
        "  log bytes / bytes the guest took in (frames received, disk read): median {:.2} over {ROUNDS} pairs",
        log_ratio[log_ratio.len() / 2]
    );
}
