//! Time-travel debugging on a minute of `ticker` recorded with a checkpoint
//! every second, through the real binary and Debian's gdb: `monitor goto`
//! to random exits, `reverse-stepi` and `reverse-continue` (to the timer
//! handler's previous hit, 50 ms of guest time back at 20 Hz) from random
//! exits, each timed in gdb (medians and maxima); the trace's size with and
//! without its checkpoints; and `--from-exit` near the end against a whole
//! replay.
//!
//! Run with `cargo bench -p vmm --bench timetravel` (scripts/bench.sh does).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object::{Object, ObjectSymbol};
use replay::RecordKind;

/// 61 s of guest time.
const TICKER: &str = "ticks=1220 hz=20";
/// Virtual seconds between the trace's checkpoints.
const CHECKPOINT_EVERY: &str = "1";
/// Samples of each gdb operation.
const SAMPLES: usize = 15;
const ROUNDS: usize = 3;

fn ftvm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftvm"));
    command.stdin(Stdio::null());
    command
}

fn ftvm_timed(args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = ftvm()
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run ftvm");
    assert!(status.success(), "ftvm {args:?} failed");
    start.elapsed()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn max(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(0.0, f64::max)
}

/// The timer handler's address in the trace's kernel.
fn handler(kernel: &Path) -> u64 {
    let bytes = std::fs::read(kernel).expect("read the kernel");
    let file = object::File::parse(&*bytes).expect("an ELF kernel");
    file.symbols()
        .find(|symbol| symbol.name().is_ok_and(|name| name.contains("8on_timer")))
        .expect("ticker's on_timer")
        .address()
}

fn debuggee(trace: &Path) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = ftvm()
        .args(["replay", trace.to_str().unwrap(), "--gdb"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ftvm");
    (child, port)
}

/// Times the gdb operations in one session; returns (goto, reverse-stepi,
/// reverse-continue) samples in seconds.
fn time_gdb(trace: &Path, kernel: &Path, exits: u64) -> [Vec<f64>; 3] {
    let (mut child, port) = debuggee(trace);
    let script = trace.with_extension("py");
    std::fs::write(
        &script,
        format!(
            r#"
import gdb, random, time
random.seed(12)
gdb.execute("set pagination off")
gdb.execute("target remote 127.0.0.1:{port}")
def timed(command):
    start = time.monotonic()
    gdb.execute(command, to_string=True)
    return time.monotonic() - start
def goto(exit):
    gdb.execute("monitor goto %d" % exit, to_string=True)
    gdb.execute("maintenance flush register-cache", to_string=True)
def random_exits():
    return [random.randrange({exits} // 10, {exits} - 100) for _ in range({SAMPLES})]
gotos = [timed("monitor goto %d" % exit) for exit in random_exits()]
steps = []
for exit in random_exits():
    goto(exit)
    gdb.execute("stepi", to_string=True)
    steps.append(timed("reverse-stepi"))
gdb.execute("hbreak *{handler:#x}", to_string=True)
continues = []
for exit in random_exits():
    goto(exit)
    gdb.execute("continue", to_string=True)
    continues.append(timed("reverse-continue"))
print("RESULT", " ".join(map(str, gotos)))
print("RESULT", " ".join(map(str, steps)))
print("RESULT", " ".join(map(str, continues)))
gdb.execute("kill")
"#,
            handler = handler(kernel),
        ),
    )
    .expect("write the gdb script");
    let output = Command::new("gdb")
        .args(["-nx", "-batch", "-x"])
        .arg(&script)
        .arg(kernel)
        .stdin(Stdio::null())
        .output()
        .expect("run gdb");
    let _ = child.wait();
    let text = String::from_utf8_lossy(&output.stdout);
    let results: Vec<Vec<f64>> = text
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|line| line.split(' ').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        results.len(),
        3,
        "gdb: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    [results[0].clone(), results[1].clone(), results[2].clone()]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ftvm-bench-tt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let trace: PathBuf = dir.join("ticker.trace");
    let path = trace.to_str().expect("a UTF-8 temp path");
    ftvm_timed(&[
        "record",
        "--trace",
        path,
        "--checkpoint-every",
        CHECKPOINT_EVERY,
        "--kernel",
        "ticker",
        "--cmdline",
        TICKER,
    ]);
    let kernel = dir.join("ticker.elf");
    ftvm_timed(&["trace", "kernel", path, kernel.to_str().unwrap()]);
    let summary = replay::inspect(&trace).expect("read the trace back");
    let exits = summary.end.exit;

    let [gotos, steps, continues] = time_gdb(&trace, &kernel, exits);
    let near_end = (exits - 100).to_string();
    let (mut full, mut from) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        full.push(ftvm_timed(&["replay", "--quiet", path]).as_secs_f64());
        from.push(ftvm_timed(&["replay", "--quiet", "--from-exit", &near_end, path]).as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);

    let guest_seconds = summary.duration_ns.unwrap_or(0) as f64 / 1e9;
    let checkpoint_bytes = summary.kinds[RecordKind::ALL
        .iter()
        .position(|kind| *kind == RecordKind::Checkpoint)
        .expect("a checkpoint kind")]
    .bytes;
    println!(
        "timetravel: ticker {TICKER}, {guest_seconds:.1} s of guest time, {exits} exits, a checkpoint every {CHECKPOINT_EVERY} s"
    );
    println!(
        "  trace: {} bytes with its {} checkpoints, {} bytes without them ({:.1}x)",
        summary.bytes,
        summary.checkpoints.len(),
        summary.bytes - checkpoint_bytes,
        summary.bytes as f64 / (summary.bytes - checkpoint_bytes) as f64
    );
    for (name, samples) in [
        ("monitor goto (random exit)", &gotos),
        ("reverse-stepi", &steps),
        ("reverse-continue (50 ms back)", &continues),
    ] {
        println!(
            "  {name:<32} median {:.3} s, max {:.3} s over {} (target: median <= 1 s)",
            median(samples.clone()),
            max(samples),
            samples.len()
        );
    }
    let (full, from) = (median(full), median(from));
    println!(
        "  replay --from-exit {near_end}: {from:.3} s vs whole replay {full:.3} s: {:.1}x faster (target >= 10x)",
        full / from
    );
}
