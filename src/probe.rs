//! The `probe` subcommand: a browser-like socket.io client that reports each step.

use std::process::ExitCode;

/// `sockproxy probe URL`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The socket.io endpoint, e.g. `https://ide.example.com/theia/socket.io/`.
    pub url: String,
}

/// Runs the probe; exit 0 when every step passed, 1 when a step failed, 2 on usage errors.
pub fn main(_args: Args) -> ExitCode {
    eprintln!("sockproxy probe: not implemented yet");
    ExitCode::from(2)
}
