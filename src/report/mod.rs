//! The offline `report` subcommand: sockproxy records in, a diagnosis per hypothesis out.

use std::process::ExitCode;

/// `sockproxy report [FILE...]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Record files (plain, `kubectl logs --prefix` output, gzip, Cloud Logging exports);
    /// none or `-` reads stdin.
    pub files: Vec<std::path::PathBuf>,
    /// The same verdicts as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Runs the report; exit 0 when no hypothesis is confirmed, 1 when one is, 2 on usage errors.
pub fn main(_args: Args) -> ExitCode {
    eprintln!("sockproxy report: not implemented yet");
    ExitCode::from(2)
}
