//! `ftvm replay` and `ftvm trace inspect`.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ft_logging::{
    End, Event, EventSource, ExitDone, ExitQuery, NullSink, OutputSink, SourceError, StateDigest,
};
use ftvm_core::platform::{Devices, PLATFORM_VERSION};
use indicatif::{ProgressBar, ProgressStyle};
use replay::{RecordStream, ReplaySource, TraceReader};
use vmm::exit_status;
use vmm::host::{HostDevices, HostSink};
use vmm::kernel::Kernel;
use vmm::machine::{Cpu, Machine, end_reason};
use vmm::vm_config::VmConfig;
use vmm::vstate::{RunError, VmEnd};

use super::error::{CliError, is_log_error, run_status};
use super::live::Host;

/// Replays shorter than this show no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);
/// Exits between looks at the progress bar.
const PROGRESS_EXITS: u64 = 4096;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace to replay.
    trace: PathBuf,
    /// Check every output and state digest and the end record; a mismatch
    /// is a divergence.
    #[arg(long)]
    verify: bool,
    /// Do not print the guest's console.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Summarise a trace: header, duration, exits, records by kind.
    Inspect {
        /// The trace to read.
        trace: PathBuf,
    },
}

pub fn replay(args: &ReplayArgs) -> Result<u8, CliError> {
    // Read the whole trace once first: a damaged trace is refused before
    // any of it replays, and the exits it ends at size the progress bar.
    let total_exits = replay::inspect(&args.trace)?.end.exit;
    let reader = TraceReader::open(&args.trace)?;
    let header = reader.header().clone();
    if header.platform != PLATFORM_VERSION {
        return Err(CliError::Platform {
            recorded: header.platform,
            ours: PLATFORM_VERSION,
        });
    }
    let kernel = Kernel {
        name: header.kernel_name.clone(),
        image: Cow::Owned(header.kernel.clone()),
    };
    let devices = Devices {
        disk: header.disk,
        net: header.net,
    };
    let config = VmConfig::with_kernel(kernel, header.mem_mib, &header.cmdline, devices)
        .map_err(CliError::TraceConfig)?;
    let mut machine = Machine::new(&config, Cpu::Recorded(&header.cpuid))?;
    let host = Host::start(false, Default::default())?;
    let mut source = Progress::new(ReplaySource::new(reader, args.verify), total_exits);
    let mut sink: Box<dyn OutputSink> = if args.quiet {
        Box::new(NullSink)
    } else {
        Box::new(HostSink::new(HostDevices::default()))
    };
    let interval = if args.verify {
        header.digest_interval
    } else {
        0
    };
    let result = machine.run(&mut source, sink.as_mut(), &host.stop, interval);
    host.finish();
    let mut source = source.finish();

    let (reason, status) = match &result {
        Ok(VmEnd::Stopped(reason)) => {
            eprintln!("ftvm: replay {reason}");
            return Ok(reason.exit_status());
        }
        // The recorded run was stopped, or failed, here: end as it did.
        Ok(VmEnd::LogEnded) => {
            let recorded = source
                .recorded_end()
                .expect("a replay source has read the End record when it reports LogEnded");
            (recorded.reason.clone(), recorded.status)
        }
        Ok(end) => (end_reason(&result), exit_status::of_end(*end)),
        // A failure of the replay itself that the recording may share
        // (KVM refusing the same instruction); anything from the log is not.
        Err(error) if !is_log_error(error) => (end_reason(&result), run_status(error)),
        Err(_) => return Err(CliError::Run(result.expect_err("an error"))),
    };
    let end = machine.end(reason, status);
    source
        .end(&end)
        .map_err(|e| CliError::Run(RunError::Core(e.into())))?;
    let recorded = source
        .recorded_end()
        .expect("a replay source has read the End record once end() succeeds");
    // Without --verify the ends are not compared; a failure of this replay
    // that the recorded run did not have is still a failure.
    if let Err(error) = result
        && recorded.reason != end.reason
    {
        return Err(CliError::Run(error));
    }
    if args.verify {
        eprintln!(
            "ftvm: replay verified: {} exits, {} console bytes, ended as recorded ({:?}, status {})",
            end.exit, end.console.bytes, recorded.reason, recorded.status
        );
    }
    Ok(recorded.status)
}

pub fn inspect(trace: &std::path::Path) -> Result<u8, CliError> {
    print!("{}", replay::inspect(trace)?);
    Ok(0)
}

/// A replay source that shows a progress bar, in exits, on stderr when the
/// replay takes longer than a second and stderr is a terminal.
struct Progress<S: RecordStream> {
    source: ReplaySource<S>,
    total_exits: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl<S: RecordStream> Progress<S> {
    fn new(source: ReplaySource<S>, total_exits: u64) -> Self {
        Self {
            source,
            total_exits,
            started: Instant::now(),
            bar: None,
        }
    }

    fn update(&mut self, exit: u64) {
        if self.bar.is_none()
            && self.started.elapsed() > PROGRESS_DELAY
            && std::io::stderr().is_terminal()
        {
            let bar = ProgressBar::new(self.total_exits);
            bar.set_style(
                ProgressStyle::with_template(
                    "replaying {bar:40} {percent:>3}% {human_pos}/{human_len} exits, eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(exit);
        }
    }

    fn finish(self) -> ReplaySource<S> {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.source
    }
}

impl<S: RecordStream> EventSource for Progress<S> {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        self.source.events(query, events)
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        if done.exit.is_multiple_of(PROGRESS_EXITS) {
            self.update(done.exit);
        }
        self.source.exit_done(done)
    }

    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError> {
        self.source.state(exit, digest)
    }

    fn end(&mut self, end: &End) -> Result<(), SourceError> {
        self.source.end(end)
    }
}
