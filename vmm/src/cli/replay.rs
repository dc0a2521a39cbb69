//! `ftvm replay`, `ftvm trace inspect` and `ftvm trace kernel`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use vmm::timetravel::{
    self, ConsoleWindow, ReplayEnd, ReplayOptions, Replayer, Stop, ending_status,
};

use super::error::CliError;
use super::live::Host;

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
    /// Print only the console bytes written at exit N and later; the
    /// replay gets there silently.
    #[arg(long, value_name = "N")]
    from_exit: Option<u64>,
    /// Stop just before exit N, printing the console bytes written before it.
    #[arg(long, value_name = "N")]
    until_exit: Option<u64>,
    /// Wait for gdb (`target remote ADDR:PORT`) with the guest stopped
    /// before its first instruction, and replay under its control.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with_all = ["from_exit", "until_exit", "quiet"])]
    gdb: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Summarise a trace: header, duration, exits, records by kind.
    Inspect {
        /// The trace to read.
        trace: PathBuf,
    },
    /// Write the kernel a trace carries, so a debugger can load its symbols.
    Kernel {
        /// The trace to read.
        trace: PathBuf,
        /// Where to write the kernel.
        out: PathBuf,
    },
}

pub fn replay(args: &ReplayArgs) -> Result<u8, CliError> {
    let from = args.from_exit.unwrap_or(0);
    if let Some(until) = args.until_exit
        && until < from
    {
        return Err(CliError::Usage(format!(
            "--until-exit {until} is before --from-exit {from}"
        )));
    }
    let console = if args.quiet {
        ConsoleWindow::quiet()
    } else {
        ConsoleWindow::new(from, args.until_exit)
    };
    let options = ReplayOptions {
        // A debugged replay checks everything it can.
        verify: args.verify || args.gdb.is_some(),
        progress: args.gdb.is_none(),
        stepping: args.gdb.is_some(),
    };
    let host = Host::start(false, Default::default())?;
    let result = replay_with(args, options, console, &host);
    host.finish();
    result
}

fn replay_with(
    args: &ReplayArgs,
    options: ReplayOptions,
    console: ConsoleWindow,
    host: &Host,
) -> Result<u8, CliError> {
    let mut replayer = Replayer::open(&args.trace, options, console, host.stop.clone())?;
    if let Some(address) = &args.gdb {
        return Ok(timetravel::gdb::serve(replayer, address)?);
    }
    // From the last checkpoint before the first exit printed.
    if let Some(from) = args.from_exit.filter(|&from| from > 0) {
        replayer.skip_toward(from - 1)?;
    }
    // Exit 0 is boot: nothing is printed before it.
    if let Some(until) = args.until_exit
        && replayer.run_to_exit(until.saturating_sub(1), &mut |_| {})? == Stop::Arrived
    {
        return Ok(0);
    }
    let ending = replayer.run_to_end()?;
    Ok(conclude(ending, args.verify))
}

/// The status a finished replay exits with, with a word on stderr.
fn conclude(ending: &ReplayEnd, verify: bool) -> u8 {
    match ending {
        ReplayEnd::Stopped(reason) => eprintln!("ftvm: replay {reason}"),
        ReplayEnd::Ended { end, recorded } if verify => eprintln!(
            "ftvm: replay verified: {} exits, {} console bytes, ended as recorded ({:?}, status {})",
            end.exit, end.console.bytes, recorded.reason, recorded.status
        ),
        ReplayEnd::Ended { .. } => {}
    }
    ending_status(ending)
}

pub fn inspect(trace: &Path) -> Result<u8, CliError> {
    print!("{}", replay::inspect(trace)?);
    Ok(0)
}

pub fn kernel(trace: &Path, out: &Path) -> Result<u8, CliError> {
    let reader = replay::TraceReader::open(trace)?;
    std::fs::write(out, &reader.header().kernel).map_err(|source| CliError::Output {
        path: out.to_owned(),
        source,
    })?;
    Ok(0)
}
