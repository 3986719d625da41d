use std::process::ExitCode;

use clap::Parser;

use mew::cli::{Cli, Command, SpaceCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Space(SpaceCommand::Clean(args))) => mew::clean::run(&cli.space, args),
        _ => ExitCode::SUCCESS,
    }
}
