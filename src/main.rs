use std::process::ExitCode;

use clap::Parser;

use mew::cli::{Cli, Command, SpaceCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Init(args)) => mew::init::run(&cli.space, args),
        Some(Command::Space(SpaceCommand::Check(args))) => mew::check::run(&cli.space, args),
        _ => ExitCode::SUCCESS,
    }
}
