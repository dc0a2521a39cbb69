//! `ftvm run` and `ftvm record`: a guest with its console on this terminal,
//! its inputs from this host, and for `record` a trace of them.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use ft_logging::EventSource;
use replay::{Recorder, TraceWriter};
use shared_disk::ImageLock;
use vmm::exit_status;
use vmm::host::HostSink;
use vmm::machine::{Cpu, Machine, end_reason};
use vmm::monitor::Monitor;
use vmm::timetravel::run_with_checkpoints;
use vmm::vstate::{RunError, VmEnd};

use super::error::CliError;
use super::live::Host;
use super::{Ended, MonitorArgs, VmArgs};

/// Exits between state digests unless `--digest-every` says otherwise:
/// hashing guest memory costs milliseconds, so not too often.
pub const DEFAULT_DIGEST_INTERVAL: u64 = 100_000;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where to write the trace.
    #[arg(long, value_name = "OUT")]
    trace: PathBuf,
    /// Exits between digests of the guest's state and console in the trace.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DIGEST_INTERVAL,
          value_parser = clap::value_parser!(u64).range(1..))]
    digest_every: u64,
    /// Write the VM's state into the trace every SECS of virtual time, for
    /// `replay --from-exit` and gdb to start from.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    checkpoint_every: Option<u64>,
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// A positive number of seconds, as nanoseconds.
fn parse_seconds(text: &str) -> Result<u64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (1e-9..=1e9).contains(&seconds) => Ok((seconds * 1e9) as u64),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0.000000001 and 1000000000"
        )),
    }
}

pub fn run(args: &VmArgs, monitor: &Arc<Monitor>, host: &Host) -> Result<Ended, CliError> {
    let (config, backends) = args.open(ImageLock::Now)?;
    let mut machine = Machine::new(&config, Cpu::Model)?;
    machine.count_exits(monitor.stats().exits.clone());
    host.attach_stdin()?;
    let mut outputs = HostSink::new(host.devices(backends, true)?);
    let result = machine.run(&mut host.live_source(), &mut outputs, &host.stop, 0);
    host.finish();
    conclude(result)
}

pub fn record(args: &RecordArgs, monitor: &Arc<Monitor>, host: &Host) -> Result<Ended, CliError> {
    let (config, backends) = args.vm.open(ImageLock::Now)?;
    let mut machine = Machine::new(&config, Cpu::Model)?;
    machine.count_exits(monitor.stats().exits.clone());
    let header = machine.header(&config, args.digest_every);
    let mut writer = TraceWriter::create(&args.trace, &header)?;
    let log_bytes = monitor.stats().log_bytes.clone();
    writer.on_write(Box::new(move |bytes| log_bytes.inc_by(bytes)));
    host.attach_stdin()?;
    let mut outputs = HostSink::new(host.devices(backends, true)?);
    let mut recorder = Recorder::new(host.live_source(), writer, args.digest_every);
    let result = match args.checkpoint_every {
        Some(every_ns) => run_with_checkpoints(
            &mut machine,
            &mut recorder,
            &mut outputs,
            &host.stop,
            args.digest_every,
            every_ns,
        ),
        None => machine.run(&mut recorder, &mut outputs, &host.stop, args.digest_every),
    };
    host.finish();
    // Whatever ended the run, the trace ends with a record saying so.
    let status = match &result {
        Ok(end) => exit_status::of_end(*end),
        Err(error) => exit_status::of_run_error(error),
    };
    recorder
        .end(&machine.end(end_reason(&result), status))
        .map_err(|error| CliError::Run(RunError::Core(error.into())))?;
    conclude(result)
}

/// How a finished run ended, with a word on stderr when the host stopped
/// it.
pub fn conclude(result: Result<VmEnd, RunError>) -> Result<Ended, CliError> {
    let reason = end_reason(&result).to_string();
    let end = result?;
    if let VmEnd::Stopped(reason) = end {
        eprintln!("ftvm: {reason}");
    }
    Ok(Ended {
        status: exit_status::of_end(end),
        reason,
    })
}
