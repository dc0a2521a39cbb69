//! `ftvm`: run, record, replay and protect a guest on KVM.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(cli::main())
}
