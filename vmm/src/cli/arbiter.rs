//! `ftvm arbiter init|status|reset PATH`: the go-live flag on the shared disk.

use std::path::PathBuf;

use clap::Subcommand;
use shared_disk::Arbiter;

use super::error::CliError;

#[derive(Debug, Subcommand)]
pub enum ArbiterCommand {
    /// Create the flag file: generation 0, nobody live.
    Init { path: PathBuf },
    /// Print the flag: its generation and who is live.
    Status { path: PathBuf },
    /// Start over: the next generation, nobody live.
    Reset { path: PathBuf },
}

pub fn arbiter(command: &ArbiterCommand) -> Result<u8, CliError> {
    let state = match command {
        ArbiterCommand::Init { path } => Arbiter::new(path).init()?,
        ArbiterCommand::Status { path } => Arbiter::new(path).status()?,
        ArbiterCommand::Reset { path } => Arbiter::new(path).reset()?,
    };
    println!("{state}");
    Ok(0)
}
