//! `mew bridge start`: an MCP server on stdio joined to a space.

use std::process::ExitCode;

use crate::cli::BridgeStartArgs;

pub fn run(_args: BridgeStartArgs) -> ExitCode {
    eprintln!("mew bridge start: not built yet");
    ExitCode::from(2)
}
