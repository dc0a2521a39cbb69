//! Re-protection, measured from the live side's `protected` events: the
//! pause the guest sees at the cutover, the time from a standby's answer
//! to protected, and the bytes sent against the guest's memory size, for
//!
//! - `ticker` at 64 MiB and, idle, at 1 GiB (loopback);
//! - `kvstore` at 64 MiB and 1 GiB under `redis-benchmark -t set -n 400 -c 4`
//!   on the hosts of `scripts/two-hosts.sh`: the live side is protected by
//!   a standby in d; when the benchmark starts that standby is killed, and
//!   the live side sends its guest to the standby in b during the run.
//!   The benchmark's requests per second during such a run, against the
//!   same pair's right after it (protected throughout), is the throughput
//!   ratio during a transfer.
//!
//! Needs root and redis-tools. Run with `cargo bench -p vmm --bench
//! reprotect` (scripts/bench.sh does).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{init_arbiter, script};

// The tests' event files and the guest's LAN.
#[path = "../../tests/common/events.rs"]
#[allow(dead_code)]
mod events;
#[path = "../../tests/common/lan.rs"]
#[allow(dead_code)]
mod lan;

use events::EventFile;

const ROUNDS: usize = 5;
const HOSTS: &str = "rpbench";
/// Where nothing listens: a live side without a backup.
const NOBODY: &str = "10.99.0.3:7000";

fn ftvm() -> &'static str {
    env!("CARGO_BIN_EXE_ftvm")
}

/// An ftvm process (in a host, or on loopback) and its event stream.
struct Ftvm {
    child: Child,
    events: EventFile,
}

impl Ftvm {
    fn start(host: Option<char>, args: &[String]) -> Self {
        let events = EventFile::new();
        let mut command = match host {
            Some(host) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &format!("{HOSTS}-{host}"), ftvm()]);
                command
            }
            None => Command::new(ftvm()),
        };
        let child = command
            .args(args)
            .arg("--events")
            .arg(events.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, events }
    }

    /// The `count`th event named `name`, waited for.
    fn nth(&self, name: &str, count: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let found: Vec<Value> = self
                .events
                .read()
                .into_iter()
                .filter(|event| event["event"] == name)
                .collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {name} #{count}: {:?}",
                self.events.read()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn stop(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A fresh flag and key in `dir`: the arguments every side shares.
fn pair_files(dir: &Path) -> Vec<String> {
    let (arbiter, key) = (dir.join("arbiter"), dir.join("key"));
    std::fs::write(&key, b"the key of the ftvm benchmarks!!").unwrap();
    init_arbiter(&arbiter);
    [
        "--arbiter".into(),
        arbiter.display().to_string(),
        "--auth-key".into(),
        key.display().to_string(),
    ]
    .to_vec()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// What one re-protection cost.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    pause_us: f64,
    to_protected_ms: f64,
    bytes: f64,
    rounds: f64,
}

impl Transfer {
    fn of(protected: &Value) -> Self {
        let number = |field: &str| protected[field].as_u64().unwrap_or_default() as f64;
        Self {
            pause_us: number("pause_us"),
            to_protected_ms: number("to_protected_ms"),
            bytes: number("bytes"),
            rounds: number("rounds"),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(what: &str, mem_mib: u64, transfers: &[Transfer]) {
    let pick = |f: fn(&Transfer) -> f64| median(transfers.iter().map(f).collect());
    let worst = transfers.iter().map(|t| t.pause_us).fold(0.0, f64::max);
    let bytes = pick(|t| t.bytes);
    println!(
        "  {what}, {mem_mib} MiB: pause {:.2} ms (worst {:.2} ms), {:.0} ms to protected, {:.0} KiB sent = {:.4} of memory, {:.0} rounds (medians of {})",
        pick(|t| t.pause_us) / 1e3,
        worst / 1e3,
        pick(|t| t.to_protected_ms),
        bytes / 1024.0,
        bytes / (mem_mib << 20) as f64,
        pick(|t| t.rounds),
        transfers.len()
    );
}

/// `ticker` alone on loopback sending itself to a standby: one transfer.
fn ticker(dir: &Path, mem_mib: u64) -> Transfer {
    let common = pair_files(dir);
    let listen = free_address();
    let mut standby_args = strings(&["backup", "--join", "--listen", &listen]);
    standby_args.extend(common.clone());
    let standby = Ftvm::start(None, &standby_args);
    standby.nth("started", 1);
    thread::sleep(Duration::from_millis(200));
    let mut args = strings(&[
        "primary",
        "--backup",
        &free_address(),
        "--wait-backup-ms",
        "100",
    ]);
    args.extend(common);
    args.extend(strings(&[
        "--reprotect",
        &listen,
        "--mem-mib",
        &mem_mib.to_string(),
    ]));
    args.extend(strings(&[
        "--kernel",
        "ticker",
        "--cmdline",
        "ticks=100000 hz=50",
    ]));
    let primary = Ftvm::start(None, &args);
    let transfer = Transfer::of(&primary.nth("protected", 1));
    primary.stop();
    standby.stop();
    transfer
}

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// `redis-benchmark -t set` on the client's host: requests per second.
fn benchmark() -> Child {
    Command::new("ip")
        .args(["netns", "exec", &format!("{HOSTS}-c"), "redis-benchmark"])
        .args([
            "-h",
            lan::GUEST,
            "-t",
            "set",
            "-n",
            "400",
            "-c",
            "4",
            "--csv",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn requests_per_second(run: Child) -> f64 {
    let output = run.wait_with_output().unwrap();
    let csv = String::from_utf8_lossy(&output.stdout);
    csv.lines()
        .skip(1)
        .find_map(|line| line.split(',').nth(1)?.trim_matches('"').parse().ok())
        .unwrap_or(f64::NAN)
}

/// Waits until the guest answers PING.
fn wait_serving() {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let output = Command::new("ip")
            .args(["netns", "exec", &format!("{HOSTS}-c"), "redis-cli"])
            .args(["-h", lan::GUEST, "PING"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&output.stdout).contains("PONG") {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("kvstore never answered");
}

/// `kvstore` in a, protected by a standby in d, then (the standby killed
/// as a benchmark starts) by the one in b during that benchmark: the
/// second transfer, and the requests per second with it and right after.
fn kvstore(dir: &Path, mem_mib: u64) -> (Transfer, f64, f64) {
    script(&["up", HOSTS]);
    let disk = lan::fresh_disk(dir);
    let common = pair_files(dir);
    let devices = strings(&["--disk", disk.to_str().unwrap(), "--net", "tap=ftvm0"]);
    let standby = |host: char, address: &str| {
        let mut args = strings(&["backup", "--join", "--listen", address]);
        args.extend(common.clone());
        args.extend(devices.clone());
        let side = Ftvm::start(Some(host), &args);
        side.nth("started", 1);
        side
    };
    let first = standby('d', "10.99.0.4:7000");
    let second = standby('b', "10.99.0.2:7000");
    thread::sleep(Duration::from_millis(300));
    let mut args = strings(&["primary", "--backup", NOBODY, "--wait-backup-ms", "100"]);
    args.extend(common.clone());
    args.extend(strings(&["--reprotect", "10.99.0.4:7000,10.99.0.2:7000"]));
    args.extend(strings(&["--mem-mib", &mem_mib.to_string()]));
    args.extend(lan::kvstore(&disk));
    let primary = Ftvm::start(Some('a'), &args);
    primary.nth("protected", 1);
    wait_serving();
    let during = benchmark();
    thread::sleep(Duration::from_millis(200));
    first.stop();
    let transfer = Transfer::of(&primary.nth("protected", 2));
    let during = requests_per_second(during);
    let after = requests_per_second(benchmark());
    primary.stop();
    second.stop();
    script(&["down", HOSTS]);
    (transfer, during, after)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ftvm-bench-reprotect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("re-protection: the live side's `protected` events, {ROUNDS} transfers each");
    for (what, mem) in [("ticker", 64), ("ticker, idle", 1024)] {
        let transfers: Vec<Transfer> = (0..ROUNDS).map(|_| ticker(&dir, mem)).collect();
        report(what, mem, &transfers);
    }
    for mem in [64, 1024] {
        let mut transfers = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..ROUNDS {
            let (transfer, during, after) = kvstore(&dir, mem);
            transfers.push(transfer);
            ratios.push(during / after);
        }
        report("kvstore under redis-benchmark", mem, &transfers);
        println!(
            "    SET requests/s of a run with a transfer in it / of the protected pair's next run: median {:.3} (each: {})",
            median(ratios.clone()),
            ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
