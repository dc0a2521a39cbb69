//! The VM state of an idle `ticker` (halted between ticks) at 64 MiB and
//! 1 GiB of RAM: how many bytes it encodes to with zero pages skipped, and
//! how long capturing, encoding, decoding and restoring take, against
//! building the same VM fresh, side by side in one run.
//!
//! Run with `cargo bench -p vmm --bench state` (scripts/bench.sh does).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ft_logging::NullSink;
use replay::{ReplaySource, TraceReader};
use vm_state::VmState;
use vmm::host::StopSignal;
use vmm::machine::{Cpu, Machine};
use vmm::replaying::Replay;
use vmm::vm_config::VmConfig;
use vmm::vstate::Ran;

const ROUNDS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn timed<T>(samples: &mut Vec<Duration>, work: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = work();
    samples.push(start.elapsed());
    value
}

fn bench(mem_mib: u32) {
    let trace = std::env::temp_dir().join(format!("ftvm-bench-state-{}.trace", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args(["record", "--trace", trace.to_str().expect("a UTF-8 path")])
        .args(["--kernel", "ticker", "--mem-mib", &mem_mib.to_string()])
        .args(["--cmdline", "ticks=20 hz=50"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run ftvm");
    assert!(status.success(), "recording ticker failed");
    let reader = TraceReader::open(&trace).expect("read the trace");
    let header = reader.header().clone();
    let config = VmConfig::from_header(&header).expect("the trace's configuration");
    let machine = Machine::new(&config, Cpu::Recorded(&header.cpuid)).expect("the VM");
    let mut replay = Replay::new(machine, ReplaySource::new(reader, false), 0);
    let stop = Arc::new(StopSignal::default());
    // Halfway through, halted between two ticks.
    let exits = replay::inspect(&trace).expect("the trace").end.exit;
    let paused = replay.run_until(&mut NullSink, &stop, exits / 2);
    assert_eq!(paused.expect("replay to the middle"), Ran::Paused);

    let (mut capture, mut encode, mut decode, mut restore, mut fresh) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut bytes = Vec::new();
    for _ in 0..ROUNDS {
        let state = timed(&mut capture, || {
            replay
                .machine()
                .capture_vm(header.clone())
                .expect("capture")
        });
        bytes = timed(&mut encode, || state.encode());
        let decoded = timed(&mut decode, || VmState::decode(&bytes).expect("decode"));
        drop(timed(&mut restore, || {
            Machine::restore(&decoded).expect("restore")
        }));
        drop(timed(&mut fresh, || {
            Machine::new(&config, Cpu::Recorded(&header.cpuid)).expect("a fresh VM")
        }));
    }
    let _ = std::fs::remove_file(&trace);
    let state = VmState::decode(&bytes).expect("decode");
    let (restore, fresh) = (median(restore), median(fresh));
    println!(
        "state: idle ticker, {mem_mib} MiB, paused after exit {}; {ROUNDS} rounds, medians",
        state.machine.exit()
    );
    let kernel = header.kernel.len();
    let pages = state.memory.data_pages() * 4096;
    println!(
        "  encoded: {} bytes ({:.3}% of RAM): {} pages with data ({pages} bytes), {} zero pages skipped, the kernel ({kernel} bytes), the rest {} bytes",
        bytes.len(),
        100.0 * bytes.len() as f64 / (f64::from(mem_mib) * 1048576.0),
        state.memory.data_pages(),
        state.memory.zero_pages(),
        bytes.len() as u64 - pages - kernel as u64
    );
    println!(
        "  capture {:.2} ms, encode {:.2} ms, decode {:.2} ms, restore {:.2} ms",
        ms(median(capture)),
        ms(median(encode)),
        ms(median(decode)),
        ms(restore)
    );
    println!(
        "  restore / fresh VM ({:.2} ms): {:.2}",
        ms(fresh),
        restore.as_secs_f64() / fresh.as_secs_f64()
    );
}

fn main() {
    bench(64);
    bench(1024);
}
