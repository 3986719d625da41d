//! `mew client connect`: a participant fed by a FIFO or stdin.

use std::process::ExitCode;

use crate::cli::ClientConnectArgs;

pub fn run(_args: ClientConnectArgs) -> ExitCode {
    eprintln!("mew client connect: not built yet");
    ExitCode::from(2)
}
