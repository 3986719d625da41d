use std::process::ExitCode;

use clap::Parser;

use mew::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = cli;
    ExitCode::SUCCESS
}
