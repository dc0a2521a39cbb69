//! Recording and replay costs on `ticker`, measured side by side in one
//! run through the real binary: `record` against `run` (wall time), `replay`
//! against `record`, and how dense the trace is (bytes per second of guest
//! time, bytes per record, bytes per time sample).
//!
//! With `FTVM_BASE=/path/to/another/ftvm`, every round also runs and
//! records through that binary (say, the previous commit built in another
//! directory), alternating with this one, and the medians are compared.
//!
//! Run with `cargo bench -p vmm --bench record_replay` (scripts/bench.sh does).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replay::RecordKind;

const ROUNDS: usize = 5;
const TICKER: &str = "ticks=100 hz=100";

fn ftvm_of(binary: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run ftvm");
    assert!(status.success(), "ftvm {args:?} failed");
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let trace = std::env::temp_dir().join(format!("ftvm-bench-{}.trace", std::process::id()));
    let path = trace.to_str().expect("a UTF-8 temp path");
    let base = std::env::var_os("FTVM_BASE").map(PathBuf::from);
    let (mut base_run, mut base_record) = (Vec::new(), Vec::new());
    let (mut run, mut record, mut replay) = (Vec::new(), Vec::new(), Vec::new());
    let run_args = ["run", "--kernel", "ticker", "--cmdline", TICKER];
    let record_args = [
        "record",
        "--trace",
        path,
        "--kernel",
        "ticker",
        "--cmdline",
        TICKER,
    ];
    let this = PathBuf::from(env!("CARGO_BIN_EXE_ftvm"));
    for _ in 0..ROUNDS {
        if let Some(base) = &base {
            base_run.push(ftvm_of(base, &run_args));
            base_record.push(ftvm_of(base, &record_args));
        }
        run.push(ftvm_of(&this, &run_args));
        record.push(ftvm_of(&this, &record_args));
        replay.push(ftvm_of(&this, &["replay", "--quiet", path]));
    }
    let (run, record, replay) = (median(run), median(record), median(replay));
    let summary = replay::inspect(Path::new(&trace)).expect("read the trace back");
    let _ = std::fs::remove_file(&trace);

    let records_bytes = summary.bytes - summary.header_bytes;
    let guest_seconds = summary.duration_ns.unwrap_or(1) as f64 / 1e9;
    let time = summary.kinds[RecordKind::ALL
        .iter()
        .position(|k| *k == RecordKind::Time)
        .expect("a time kind")];
    println!("record_replay: ticker {TICKER}, {ROUNDS} rounds, medians");
    println!(
        "  run {:.3} s, record {:.3} s, replay {:.3} s",
        run.as_secs_f64(),
        record.as_secs_f64(),
        replay.as_secs_f64()
    );
    println!(
        "  record / run:    {:.3} (target <= 1.05)",
        record.as_secs_f64() / run.as_secs_f64()
    );
    println!(
        "  replay / record: {:.3} (target <= 1.0)",
        replay.as_secs_f64() / record.as_secs_f64()
    );
    if let Some(base) = &base {
        let (base_run, base_record) = (median(base_run), median(base_record));
        println!(
            "  {}: run {:.3} s, record {:.3} s, record / run {:.3}; this record / run over that one's {:.3}",
            base.display(),
            base_run.as_secs_f64(),
            base_record.as_secs_f64(),
            base_record.as_secs_f64() / base_run.as_secs_f64(),
            (record.as_secs_f64() / run.as_secs_f64())
                / (base_record.as_secs_f64() / base_run.as_secs_f64())
        );
    }
    println!(
        "  trace: {} records in {} bytes after a {}-byte header; {:.0} bytes per second of guest time, {:.1} bytes per record",
        summary.records,
        records_bytes,
        summary.header_bytes,
        records_bytes as f64 / guest_seconds,
        records_bytes as f64 / summary.records as f64
    );
    println!(
        "  time samples: {} records, {:.1} bytes each (target <= 16)",
        time.records,
        time.bytes as f64 / time.records.max(1) as f64
    );
}
