use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use mew::cli::{
    BridgeCommand, Cli, ClientCommand, Command, GatewayCommand, SpaceArgs, SpaceCommand,
    TokenCommand,
};
use mew::cmd::{self, Outcome, common::load, control::Action};

fn main() -> ExitCode {
    let cli = parse_cli();
    // Commands that print and end die quietly of SIGPIPE when their reader
    // goes away; the server (also `up --no-tui`, `up` with its TUI) and the
    // gateway handle a closed output themselves.
    let handles_pipe = match &cli.command {
        Some(Command::Serve(_) | Command::Gateway(_)) => true,
        Some(Command::Space(SpaceCommand::Up(up)) | Command::Up(up)) => !up.detach,
        None => true,
        _ => false,
    };
    if !handles_pipe {
        mew::sys::default_sigpipe();
    }
    if let Some(Command::Space(SpaceCommand::Up(up)) | Command::Up(up)) = &cli.command
        && let Some(level) = &up.log_level
    {
        // The gateway process inherits it (its `--log-level` default).
        mew::sys::set_env_at_startup("MEW_GATEWAY_LOG_LEVEL", level);
    }
    if !matches!(cli.command, Some(Command::Gateway(_))) {
        init_tracing(matches!(cli.command, Some(Command::Serve(_))));
    }
    let outcome = match cli.command {
        None => cmd::bare::run(&cli.space),
        Some(Command::Init(args)) => cmd::init::run(&cli.space, &args),
        Some(Command::Serve(args)) => cmd::serve::run(&cli.space, &args),
        Some(Command::Space(c)) => space(c, &cli.space),
        Some(Command::Up(up)) => space(SpaceCommand::Up(up), &cli.space),
        Some(Command::Down(down)) => space(SpaceCommand::Down(down), &cli.space),
        Some(Command::Bridge(BridgeCommand::Start(args))) => mew::participant::bridge::run(args),
        Some(Command::Client(ClientCommand::Connect(args))) => mew::participant::client::run(args),
        Some(Command::Token(TokenCommand::Create(args))) => cmd::token::run(&cli.space, &args),
        Some(Command::Gateway(GatewayCommand::Start(a))) => cmd::gateway::run(&cli.space, a),
    };
    // Every command's error is printed here, and only here.
    // One write: a process sharing the terminal (the agent running
    // `mew client connect`) must not get its output inside the message.
    outcome.unwrap_or_else(|e| {
        let _ = std::io::stderr().write_all(format!("{e}\n").as_bytes());
        e.exit_code()
    })
}

/// Parse the command line; a space command typed without `space` (`mew up`,
/// `mew status` …, the upstream CLI's habit) gets a hint.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                let word = match e.get(clap::error::ContextKind::InvalidSubcommand) {
                    Some(clap::error::ContextValue::String(w)) => Some(w.clone()),
                    _ => None,
                };
                const SPACE_COMMANDS: &[&str] = &[
                    "check", "attach", "status", "logs", "restart", "stop", "start", "ls", "clean",
                ];
                if let Some(w) = word.filter(|w| SPACE_COMMANDS.contains(&w.as_str())) {
                    let _ = e.print();
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nhelp: `{w}` is a space command: `mew space {w}`"
                    );
                    std::process::exit(2);
                }
            }
            // Upstream's `-d` is `--space-dir`; mew's is `--detach`, as in
            // docker compose: `mew space up -d ./dir` says so.
            let args: Vec<String> = std::env::args().collect();
            if e.kind() == clap::error::ErrorKind::UnknownArgument && args.iter().any(|a| a == "-d")
            {
                let _ = e.print();
                let _ = writeln!(
                    std::io::stderr(),
                    "\nhelp: `-d` means `--detach` in mew (as in docker compose); the upstream MEW CLI's `-d DIR` is `--space-dir DIR` here"
                );
                std::process::exit(2);
            }
            e.exit()
        }
    }
}

/// mew's own diagnostics go to stderr (for the server: its log file),
/// filtered by `MEW_LOG` (default: warnings; the server logs info).
fn init_tracing(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn space(c: SpaceCommand, args: &SpaceArgs) -> Outcome {
    match c {
        SpaceCommand::Check(a) => cmd::check::run(args, &a),
        SpaceCommand::Export(a) => cmd::export::run(args, &a),
        SpaceCommand::Clean(a) => cmd::clean::run(args, &a),
        SpaceCommand::Connect(a) => mew::participant::connect::run(&load(args)?, &a),
        SpaceCommand::Up(up) => cmd::up::run(up, args),
        SpaceCommand::Down(a) => cmd::down::run(args, &a),
        SpaceCommand::Status(a) => cmd::status::run(&load(args)?.dir, a.json),
        SpaceCommand::Logs(a) => {
            let since = cmd::common::duration_arg("--since", &a.since)?;
            let opts = cmd::logs::LogsOptions {
                follow: a.follow,
                lines: a.lines,
                since,
                no_prefix: a.no_prefix,
                names: a.names,
            };
            cmd::logs::run(&load(args)?, opts)
        }
        SpaceCommand::Restart(a) => cmd::control::run(&load(args)?.dir, Action::Restart, a.names),
        SpaceCommand::Stop(a) => cmd::control::run(&load(args)?.dir, Action::Stop, a.names),
        SpaceCommand::Start(a) => cmd::control::run(&load(args)?.dir, Action::Start, a.names),
        SpaceCommand::Ls(a) => cmd::ls::run(a.json),
        SpaceCommand::Reload => cmd::reload::run(args),
        SpaceCommand::Scale(a) => cmd::scale::run(args, &a.target),
        SpaceCommand::Run(a) => cmd::run::run(args, a),
        SpaceCommand::Attach => cmd::attach::run(&load(args)?.dir, false),
    }
}
