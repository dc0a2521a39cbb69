//! The cost of one port-I/O exit through ftvm's deterministic core, against
//! a bare KVM_RUN loop on the same guest code, and the boot-to-exit time of
//! `hello` through the real binary. Measured side by side in one run,
//! alternating, since absolute times on shared machines drift.
//!
//! Run with `cargo bench -p vmm --bench exit_cost` (scripts/bench.sh does).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ft_logging::NullSink;
use kvm_ioctls::VcpuExit;
use vmm::host::{LiveSource, SerialWindow, StopSignal, VirtualClock};
use vmm::machine::{Cpu, Machine};
use vmm::vm_config::VmConfig;

const ROUNDS: usize = 5;
const EXITS: u64 = 100_000;
const EXIT_PORT: u16 = 0xf4;

fn exitloop(n: u64) -> Machine {
    let config = VmConfig::new("exitloop", 64, &format!("n={n}"), Default::default())
        .expect("exitloop config");
    Machine::new(&config, Cpu::Model).expect("create the VM")
}

/// Guest time through ftvm's exit handler.
fn through_ftvm(n: u64) -> Duration {
    let mut machine = exitloop(n);
    // As every command does: exits are counted for the metrics.
    machine.count_exits(vmm::monitor::Stats::new().exits.clone());
    let (_input, receiver) = crossbeam_channel::unbounded();
    let stop = Arc::new(StopSignal::default());
    let mut source = LiveSource::new(
        receiver,
        SerialWindow::default(),
        stop.clone(),
        VirtualClock::start(),
    );
    let start = Instant::now();
    machine
        .run(&mut source, &mut NullSink, &stop, 0)
        .expect("exitloop runs");
    start.elapsed()
}

/// Guest time through a loop that only re-enters KVM.
fn bare_loop(n: u64) -> Duration {
    let mut machine = exitloop(n);
    let vcpu = machine.vcpu_mut().fd_mut();
    let start = Instant::now();
    loop {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::IoOut(EXIT_PORT, _) => break,
            VcpuExit::IoIn(_, data) => data.fill(0xff),
            VcpuExit::IoOut(..) => {}
            other => panic!("unexpected exit in the bare loop: {other:?}"),
        }
    }
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Per-exit cost: the difference between a long and a short run, so boot
/// and the guest's own setup cancel out.
fn per_exit(run: fn(u64) -> Duration) -> Duration {
    let (long, short) = (run(EXITS), run(1));
    long.saturating_sub(short) / EXITS as u32
}

fn boot_to_exit() -> Duration {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args(["run", "--kernel", "hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run ftvm");
    assert!(status.success());
    start.elapsed()
}

fn main() {
    let mut ftvm = Vec::new();
    let mut bare = Vec::new();
    let mut boots = Vec::new();
    for _ in 0..ROUNDS {
        ftvm.push(per_exit(through_ftvm));
        bare.push(per_exit(bare_loop));
        boots.push(boot_to_exit());
    }
    let (ftvm, bare) = (median(ftvm), median(bare));
    println!("exit_cost: {ROUNDS} rounds, {EXITS} port-I/O exits each, medians");
    println!(
        "  boot-to-exit of `ftvm run --kernel hello`: {:.1} ms",
        median(boots).as_secs_f64() * 1e3
    );
    println!(
        "  per exit through ftvm:  {:.3} us",
        ftvm.as_secs_f64() * 1e6
    );
    println!(
        "  per exit, bare KVM_RUN: {:.3} us",
        bare.as_secs_f64() * 1e6
    );
    println!(
        "  ratio ftvm / bare: {:.3} (target <= 1.2)",
        ftvm.as_secs_f64() / bare.as_secs_f64()
    );
}
