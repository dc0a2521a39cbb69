//! The command line: clap types, dispatch, and the mapping from failures to
//! the documented exit statuses.

mod admit;
mod arbiter;
mod demo;
mod devices;
mod error;
mod ft;
mod live;
mod replay;
mod run;
mod standby;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ft_logging::channel::BackupListener;
use shared_disk::ImageLock;
use tracing_subscriber::EnvFilter;
use vmm::exit_status::USAGE;
use vmm::monitor::Monitor;
use vmm::vm_config::{DEFAULT_MEM_MIB, VmConfig};

#[derive(Debug, Parser)]
#[command(name = "ftvm", version, about = "A fault-tolerant hypervisor on KVM")]
struct Cli {
    /// Log level or filter for messages on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a takeover: a primary and a backup of `ticker` on this machine,
    /// the primary killed, the backup going live.
    Demo(demo::DemoArgs),
    /// Boot a guest and connect its console to this terminal.
    Run(run::RunArgs),
    /// Run a guest like `run`, writing every nondeterministic input to a trace.
    Record(run::RecordArgs),
    /// Re-execute a recorded run from its trace alone.
    Replay(replay::ReplayArgs),
    /// Look into trace files.
    #[command(subcommand)]
    Trace(replay::TraceCommand),
    /// Run a guest as the primary of a fault-tolerant pair.
    Primary(ft::PrimaryArgs),
    /// Run a guest as the backup of a fault-tolerant pair, ready to take
    /// over; with --join, a standby that a live side sends its running
    /// guest to.
    Backup(ft::BackupArgs),
    /// Create, show or reset the go-live flag on the shared disk.
    #[command(subcommand)]
    Arbiter(arbiter::ArbiterCommand),
}

/// What describes a VM, shared by every command that starts one.
#[derive(Debug, Args)]
struct VmArgs {
    /// Kernel: a PVH ELF64 file, or the name of a built-in image (hello, ticker, exitloop, diskcheck, virtiobad, kvstore, stopwatch).
    #[arg(long, value_name = "IMG")]
    kernel: String,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = DEFAULT_MEM_MIB, value_name = "N")]
    mem_mib: u32,
    /// Command line passed to the guest in hvm_start_info.
    #[arg(long, default_value = "", value_name = "S")]
    cmdline: String,
    #[command(flatten)]
    devices: DeviceArgs,
}

/// The host's side of the guest's devices.
#[derive(Debug, Clone, Args)]
struct DeviceArgs {
    /// A raw disk image for the guest's virtio block device; `,ro` offers
    /// it read-only (so is an image this process may not write).
    #[arg(long, value_name = "PATH[,ro]", value_parser = devices::parse_disk)]
    disk: Option<devices::DiskArg>,
    /// A virtio network card on TAP device NAME (created if missing); the
    /// MAC address defaults to one derived from the guest's command line,
    /// the same on every host.
    #[arg(long, value_name = "tap=NAME[,mac=MAC]", value_parser = devices::parse_net)]
    net: Option<devices::NetArg>,
}

/// What a running VM tells programs about itself.
#[derive(Debug, Args)]
struct MonitorArgs {
    /// Write the event stream (JSON Lines, one event per line, version 1)
    /// to this file, created or truncated.
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,
    /// Serve Prometheus metrics (text format 0.0.4) on
    /// http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
}

/// How a monitored command ended: its exit status, and why.
#[derive(Debug)]
struct Ended {
    status: u8,
    reason: String,
}

impl MonitorArgs {
    /// Runs `command` as `role` with `kernel` on this host, its events and
    /// metrics set up first (an unusable events file or metrics address is
    /// a usage error), then the host's signal handling and what `ready`
    /// makes (refused at start like the others when it fails), its start
    /// and end on the event stream.
    fn monitor<T>(
        &self,
        role: &str,
        kernel: &str,
        ready: impl FnOnce() -> Result<T, error::CliError>,
        command: impl FnOnce(T, &Arc<Monitor>, &live::Host) -> Result<Ended, error::CliError>,
    ) -> Result<u8, error::CliError> {
        let monitor = Monitor::start(self.events.as_deref(), self.metrics)?;
        // Signals are handled, and what `ready` sets up (a backup's
        // listening port) is there, before `started` says the process is up.
        let host = live::Host::start(false, monitor.stats().clone())?;
        let prepared = ready()?;
        monitor.started(role, kernel);
        let result = command(prepared, &monitor, &host);
        host.finish();
        match &result {
            Ok(ended) => monitor.ended(ended.status, &ended.reason),
            Err(error) => monitor.ended(error.status(), &error.to_string()),
        }
        result.map(|ended| ended.status)
    }
}

impl VmArgs {
    /// Checks the VM's settings and opens its disk image (locked as `lock`
    /// says) and TAP device.
    fn open(&self, lock: ImageLock) -> Result<(VmConfig, devices::Backends), error::CliError> {
        let backends = devices::Backends::open(
            lock,
            self.devices.disk.as_ref(),
            self.devices.net.as_ref(),
            &self.cmdline,
        )?;
        let config = VmConfig::new(
            &self.kernel,
            self.mem_mib,
            &self.cmdline,
            backends.devices(),
        )?;
        Ok((config, backends))
    }
}

/// The setup of a command that needs none before it is up.
fn no_setup() -> Result<(), error::CliError> {
    Ok(())
}

/// Runs ftvm and returns its exit status.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { USAGE } else { 0 };
        }
    };
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "ftvm: error: invalid --log-level `{}`: {error}",
                cli.log_level
            );
            return USAGE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Demo(args) => demo::demo(&args),
        Command::Run(args) => {
            args.monitor
                .monitor("run", &args.vm.kernel, no_setup, |(), monitor, host| {
                    run::run(&args.vm, monitor, host)
                })
        }
        Command::Record(args) => {
            args.monitor
                .monitor("record", &args.vm.kernel, no_setup, |(), monitor, host| {
                    run::record(&args, monitor, host)
                })
        }
        Command::Replay(args) => replay::replay(&args),
        Command::Trace(replay::TraceCommand::Inspect { trace }) => replay::inspect(&trace),
        Command::Trace(replay::TraceCommand::Kernel { trace, out }) => replay::kernel(&trace, &out),
        Command::Primary(args) => {
            args.monitor
                .monitor("primary", &args.vm.kernel, no_setup, |(), monitor, host| {
                    ft::primary(&args, monitor, host)
                })
        }
        Command::Backup(args) => args.monitor.monitor(
            args.role(),
            args.kernel(),
            || Ok(BackupListener::bind(args.listen)?),
            |listener, monitor, host| ft::backup(&args, listener, monitor, host),
        ),
        Command::Arbiter(command) => arbiter::arbiter(&command),
    };
    match result {
        Ok(status) => status,
        // A stop the user asked for is no error.
        Err(error @ error::CliError::Stopped { .. }) => {
            eprintln!("ftvm: {error}");
            error.status()
        }
        Err(error) => {
            eprintln!("ftvm: error: {error}");
            error.status()
        }
    }
}
