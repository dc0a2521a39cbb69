//! `ftvm replay` and `ftvm trace inspect`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ft_logging::{NullSink, OutputSink, Record, SourceError};
use ftvm_core::platform::PLATFORM_VERSION;
use indicatif::{ProgressBar, ProgressStyle};
use replay::{RecordStream, ReplaySource, TraceReader};
use vmm::host::{HostDevices, HostSink};
use vmm::machine::{Cpu, Machine};
use vmm::replaying::{Replay, ReplayEnd};
use vmm::vm_config::VmConfig;

use super::error::CliError;
use super::live::Host;

/// Replays shorter than this show no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);
/// Exits between moves of the progress bar.
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
    let config = VmConfig::from_header(&header).map_err(CliError::TraceConfig)?;
    let machine = Machine::new(&config, Cpu::Recorded(&header.cpuid))?;
    let host = Host::start(false, Default::default())?;
    let source = ReplaySource::new(Progress::new(reader, total_exits), args.verify);
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
    let mut replay = Replay::new(machine, source, interval);
    let result = replay.run(sink.as_mut(), &host.stop);
    host.finish();
    match replay.finish(result).map_err(CliError::Run)? {
        ReplayEnd::Stopped(reason) => {
            eprintln!("ftvm: replay {reason}");
            Ok(reason.exit_status())
        }
        ReplayEnd::Ended { end, recorded } => {
            if args.verify {
                eprintln!(
                    "ftvm: replay verified: {} exits, {} console bytes, ended as recorded ({:?}, status {})",
                    end.exit, end.console.bytes, recorded.reason, recorded.status
                );
            }
            Ok(recorded.status)
        }
    }
}

pub fn inspect(trace: &std::path::Path) -> Result<u8, CliError> {
    print!("{}", replay::inspect(trace)?);
    Ok(0)
}

/// A trace read by a replay that shows a progress bar, in exits, on stderr
/// when the replay takes longer than a second and stderr is a terminal.
struct Progress<S: RecordStream> {
    stream: S,
    total_exits: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    /// The exit the bar last moved to.
    shown: u64,
}

impl<S: RecordStream> Progress<S> {
    fn new(stream: S, total_exits: u64) -> Self {
        Self {
            stream,
            total_exits,
            started: Instant::now(),
            bar: None,
            shown: 0,
        }
    }

    fn update(&mut self, exit: u64) {
        self.shown = exit;
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
}

impl<S: RecordStream> RecordStream for Progress<S> {
    fn next_record(&mut self, exit: u64) -> Result<Option<Record>, SourceError> {
        if exit >= self.shown + PROGRESS_EXITS {
            self.update(exit);
        }
        self.stream.next_record(exit)
    }
}

impl<S: RecordStream> Drop for Progress<S> {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
