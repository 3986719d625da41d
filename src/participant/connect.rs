//! `mew space connect`: join the running space from this terminal, line mode.

use std::process::ExitCode;

use crate::cli::ConnectArgs;
use crate::config::SpaceConfig;

pub fn run(_cfg: &SpaceConfig, _args: &ConnectArgs) -> ExitCode {
    eprintln!("mew space connect: not built yet");
    ExitCode::from(2)
}
